//! Key files, shared by the client (`sesame`) and the daemon (`sesamed`).
//!
//! Every key is 32 bytes, stored as one text line `KIND:BASE64` (standard
//! base64 with padding), for example
//! `sesame-spa-key-v1:q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k=`.
//!
//! | kind | holds | secret |
//! | --- | --- | --- |
//! | `sesame-spa-key-v1` | symmetric SPA key | yes |
//! | `sesame-identity-v1` | Ed25519 identity seed (public-key SPA, client) | yes |
//! | `sesame-identity-pub-v1` | Ed25519 public key (server's list of users) | no |
//! | `sesame-server-v1` | X25519 secret key (public-key SPA, server) | yes |
//! | `sesame-server-pub-v1` | X25519 public key (clients) | no |
//! | `sesame-totp-v1` | TOTP secret | yes |
//!
//! Secret files must be regular files that neither group nor others may
//! access (`mode & 0o077 == 0`) and that belong to the current user or root,
//! as ssh demands of its private keys; otherwise loading fails with an error
//! that names the file, its mode and the fix. Secret bytes are read into
//! buffers that are wiped when dropped, and never appear in errors or
//! `Debug` output. Public keys may be given inline in a config (the line
//! itself) or as the path of a file holding it: see [`identity_public`] and
//! [`server_public`].

use crate::located::ReadError;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::{DecodeError, DecodeSliceError, Engine};
use sesame_core::spa::{IdentityKey, IdentityPublic, ServerKey, ServerPublic, SpaKey};
use sesame_core::totp::TotpSecret;
use zeroize::Zeroizing;

/// Length of every key, in bytes.
pub const KEY_LEN: usize = 32;

/// Longest key file read; a key line is about 70 bytes.
const MAX_FILE_LEN: usize = 4096;

/// Name used in errors for a key given inline (not in a file).
const INLINE: &str = "inline key";

/// What a key line holds: its `KIND:` prefix.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// `sesame-spa-key-v1`: a symmetric SPA key (secret).
    SpaKey,
    /// `sesame-identity-v1`: an Ed25519 identity seed (secret).
    Identity,
    /// `sesame-identity-pub-v1`: an Ed25519 public key.
    IdentityPublic,
    /// `sesame-server-v1`: the server's X25519 secret key (secret).
    Server,
    /// `sesame-server-pub-v1`: the server's X25519 public key.
    ServerPublic,
    /// `sesame-totp-v1`: a TOTP secret (secret).
    Totp,
}

impl KeyKind {
    /// Every kind.
    pub const ALL: [KeyKind; 6] = [
        KeyKind::SpaKey,
        KeyKind::Identity,
        KeyKind::IdentityPublic,
        KeyKind::Server,
        KeyKind::ServerPublic,
        KeyKind::Totp,
    ];

    /// The prefix before the `:` of a key line.
    pub const fn prefix(self) -> &'static str {
        match self {
            KeyKind::SpaKey => "sesame-spa-key-v1",
            KeyKind::Identity => "sesame-identity-v1",
            KeyKind::IdentityPublic => "sesame-identity-pub-v1",
            KeyKind::Server => "sesame-server-v1",
            KeyKind::ServerPublic => "sesame-server-pub-v1",
            KeyKind::Totp => "sesame-totp-v1",
        }
    }

    /// What the kind holds, in words with an article, for messages.
    pub const fn description(self) -> &'static str {
        match self {
            KeyKind::SpaKey => "a symmetric SPA key",
            KeyKind::Identity => "an SPA identity (secret) key",
            KeyKind::IdentityPublic => "an SPA identity public key",
            KeyKind::Server => "an SPA server (secret) key",
            KeyKind::ServerPublic => "an SPA server public key",
            KeyKind::Totp => "a TOTP secret",
        }
    }

    /// True for kinds that must stay private (checked file permissions).
    pub const fn is_secret(self) -> bool {
        !matches!(self, KeyKind::IdentityPublic | KeyKind::ServerPublic)
    }

    /// The kind whose prefix is `prefix`, if any.
    pub fn from_prefix(prefix: &str) -> Option<KeyKind> {
        KeyKind::ALL.into_iter().find(|k| k.prefix() == prefix)
    }

    /// The other half of a key pair.
    const fn counterpart(self) -> Option<KeyKind> {
        match self {
            KeyKind::Identity => Some(KeyKind::IdentityPublic),
            KeyKind::IdentityPublic => Some(KeyKind::Identity),
            KeyKind::Server => Some(KeyKind::ServerPublic),
            KeyKind::ServerPublic => Some(KeyKind::Server),
            KeyKind::SpaKey | KeyKind::Totp => None,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// Why a key file (or an inline key) cannot be used. `file` is the path as
/// given, or `inline key`. No variant carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// A public key file writable by its group or others.
    #[error("{0}")]
    Permissions(#[from] crate::secure_file::WritableByOthers),
    /// The file cannot be opened or read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The file cannot be written.
    #[error("{file}: cannot write key file: {source}")]
    Write {
        /// The file.
        file: String,
        /// The OS error.
        source: io::Error,
    },
    /// Refusing to overwrite an existing file.
    #[error("{file} already exists; refusing to overwrite it (pass --force to replace it)")]
    Exists {
        /// The file.
        file: String,
    },
    /// A directory, device, FIFO or socket.
    #[error("{file}: not a regular file")]
    NotRegular {
        /// The file.
        file: String,
    },
    /// A secret key file that group or others may access.
    #[error(
        "{file}: permissions {mode:04o} are too open: a secret key must not be accessible \
         by group or others; run `chmod 600 {file}`"
    )]
    TooOpen {
        /// The file.
        file: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A secret key file that belongs to someone else.
    #[error(
        "{file}: owned by uid {owner}: a secret key must belong to you (uid {uid}) or root; \
         run `chown {uid} {file}`"
    )]
    BadOwner {
        /// The file.
        file: String,
        /// The file's owner.
        owner: u32,
        /// The current (effective) user.
        uid: u32,
    },
    /// Longer than any key file.
    #[error("{file}: {len} bytes or more, too long for a key file")]
    TooLong {
        /// The file.
        file: String,
        /// Bytes read before giving up.
        len: usize,
    },
    /// Not one line `KIND:BASE64`.
    #[error("{file}: not a Sesame key: expected one line `{expected}:BASE64` ({what})")]
    Syntax {
        /// The file.
        file: String,
        /// The kind expected.
        expected: KeyKind,
        /// What is wrong, without any of the file's content.
        what: &'static str,
    },
    /// A key line of another kind.
    #[error("{file}: expected {} (`{expected}:...`), found {found}{hint}", expected.description())]
    WrongKind {
        /// The file.
        file: String,
        /// The kind expected.
        expected: KeyKind,
        /// What was found: a known kind, or the unknown prefix.
        found: String,
        /// Advice when the other half of the key pair was given.
        hint: &'static str,
    },
    /// The base64 text is invalid.
    #[error("{file}: invalid base64 in {kind} key: {detail}")]
    BadBase64 {
        /// The file.
        file: String,
        /// The kind of the line.
        kind: KeyKind,
        /// Where and what, without the offending character.
        detail: String,
    },
    /// The key decodes to the wrong number of bytes.
    #[error("{file}: a {kind} key holds 32 bytes, this one decodes to {len}")]
    WrongLength {
        /// The file.
        file: String,
        /// The kind of the line.
        kind: KeyKind,
        /// Bytes decoded.
        len: usize,
    },
    /// The bytes are not a usable key (a weak Ed25519 point).
    #[error("{file}: unusable {kind} key: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// The kind of the line.
        kind: KeyKind,
        /// Why.
        reason: String,
    },
    /// A writer was called with a kind of the other class (a bug).
    #[error("{file}: {kind} is {} key kind; use {use_instead}", if kind.is_secret() { "a secret" } else { "a public" })]
    WrongWriter {
        /// The file.
        file: String,
        /// The kind given.
        kind: KeyKind,
        /// The function to call.
        use_instead: &'static str,
    },
}

impl KeyFileError {
    /// Reading `path` failed with `source`.
    pub fn read(path: &Path, source: io::Error) -> Self {
        KeyFileError::Read(ReadError::of(path, "key file")(source))
    }
}

/// The line `KIND:BASE64\n` of a key. Wiped when dropped (it encodes the key).
pub fn encode_line(kind: KeyKind, bytes: &[u8; KEY_LEN]) -> Zeroizing<String> {
    let mut line = Zeroizing::new(String::with_capacity(kind.prefix().len() + 1 + 44 + 1));
    line.push_str(kind.prefix());
    line.push(':');
    STANDARD.encode_string(bytes, &mut line);
    line.push('\n');
    line
}

/// Parses one key line of `expected` kind (surrounding white space is
/// ignored). `file` names the line's origin in errors.
pub fn parse_line(
    file: &str,
    text: &str,
    expected: KeyKind,
) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyFileError> {
    let syntax = |what| KeyFileError::Syntax {
        file: file.to_string(),
        expected,
        what,
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(syntax("the file is empty"));
    }
    if text.contains('\n') {
        return Err(syntax("more than one line"));
    }
    let Some((prefix, b64)) = text.split_once(':') else {
        return Err(syntax("no `KIND:` prefix"));
    };
    if prefix != expected.prefix() {
        let (found, hint) = match KeyKind::from_prefix(prefix) {
            Some(kind) => {
                let hint = if expected.counterpart() == Some(kind) {
                    if kind.is_secret() {
                        ": this is the SECRET half of the key pair; give the public key \
                         (the .pub file) and keep the secret one private"
                    } else {
                        ": this is the public half of the key pair; give the secret key file \
                         (without .pub)"
                    }
                } else {
                    ""
                };
                (format!("{} (`{kind}:...`)", kind.description()), hint)
            }
            None if is_plain_word(prefix) => (format!("unknown kind `{prefix}`"), ""),
            None => ("an unknown prefix".to_string(), ""),
        };
        return Err(KeyFileError::WrongKind {
            file: file.to_string(),
            expected,
            found,
            hint,
        });
    }
    let b64 = b64.trim();
    let mut out = Zeroizing::new(vec![0u8; b64.len().div_ceil(4) * 3]);
    let len = STANDARD
        .decode_slice(b64, &mut out[..])
        .map_err(|e| KeyFileError::BadBase64 {
            file: file.to_string(),
            kind: expected,
            detail: describe_base64_error(e),
        })?;
    if len != KEY_LEN {
        return Err(KeyFileError::WrongLength {
            file: file.to_string(),
            kind: expected,
            len,
        });
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&out[..KEY_LEN]);
    Ok(key)
}

/// True for a short word safe to repeat in an error (not a secret's text).
fn is_plain_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The base64 error without the offending character (part of a secret).
fn describe_base64_error(e: DecodeSliceError) -> String {
    match e {
        DecodeSliceError::DecodeError(DecodeError::InvalidByte(offset, _)) => {
            format!("invalid character at position {}", offset + 1)
        }
        DecodeSliceError::DecodeError(DecodeError::InvalidLength(len)) => {
            format!("{len} characters is not a valid base64 length")
        }
        DecodeSliceError::DecodeError(DecodeError::InvalidLastSymbol(offset, _)) => {
            format!("invalid last character at position {}", offset + 1)
        }
        DecodeSliceError::DecodeError(DecodeError::InvalidPadding) => {
            "invalid padding (standard base64 ends with `=` to a multiple of 4 characters)".into()
        }
        DecodeSliceError::OutputSliceTooSmall => "too long".into(),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Opens `path` without blocking on FIFOs and checks it is a regular file.
fn open_regular(path: &Path) -> Result<(File, std::fs::Metadata), KeyFileError> {
    let read_err = |source| KeyFileError::read(path, source);
    let file = crate::os::no_block_no_tty(OpenOptions::new().read(true))
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.file_type().is_file() {
        return Err(KeyFileError::NotRegular {
            file: display(path),
        });
    }
    Ok((file, meta))
}

/// Reads at most [`MAX_FILE_LEN`] bytes into a buffer wiped on drop.
fn read_limited(path: &Path, mut file: File) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let mut buf = Zeroizing::new(vec![0u8; MAX_FILE_LEN + 1]);
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(KeyFileError::read(path, source)),
        }
    }
    if len > MAX_FILE_LEN {
        return Err(KeyFileError::TooLong {
            file: display(path),
            len,
        });
    }
    buf.truncate(len);
    Ok(buf)
}

fn utf8<'a>(path: &Path, bytes: &'a [u8], kind: KeyKind) -> Result<&'a str, KeyFileError> {
    std::str::from_utf8(bytes).map_err(|_| KeyFileError::Syntax {
        file: display(path),
        expected: kind,
        what: "not text",
    })
}

/// Checks that a secret key file is private to its owner, who is the
/// current user or root.
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyFileError> {
    let Some((mode, owner)) = crate::os::mode_and_owner(meta) else {
        return Ok(());
    };
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            file: display(path),
            mode,
        });
    }
    let uid = crate::os::effective_uid();
    if !crate::secure_file::trusted_owner(owner) {
        return Err(KeyFileError::BadOwner {
            file: display(path),
            owner,
            uid,
        });
    }
    Ok(())
}

/// Reads a secret key file of `kind`, after checking its type, permissions
/// and owner. The bytes are wiped when dropped.
pub fn read_secret(path: &Path, kind: KeyKind) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyFileError> {
    let (file, meta) = open_regular(path)?;
    check_private(path, &meta)?;
    let bytes = read_limited(path, file)?;
    parse_line(&display(path), utf8(path, &bytes, kind)?, kind)
}

/// Reads a one-line secret that is not a Sesame key (a store password),
/// with the checks of [`read_secret`]: a regular file, not a symlink, owned
/// by root or the daemon's user, readable by no one else. Surrounding
/// whitespace is trimmed.
pub fn read_private_text(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    let (file, meta) = open_regular(path)?;
    check_private(path, &meta)?;
    let bytes = read_limited(path, file)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        KeyFileError::read(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
        )
    })?;
    Ok(Zeroizing::new(text.trim().to_string()))
}

/// Reads a public key file of `kind` (refused when group- or
/// world-writable; readable by anyone is fine).
pub fn read_public(path: &Path, kind: KeyKind) -> Result<[u8; KEY_LEN], KeyFileError> {
    let (file, _) = open_regular(path)?;
    crate::secure_file::check_not_writable_by_others(path)?;
    let bytes = read_limited(path, file)?;
    parse_line(&display(path), utf8(path, &bytes, kind)?, kind).map(|k| *k)
}

/// Loads a symmetric SPA key file (`sesame-spa-key-v1`, secret).
pub fn load_spa_key(path: &Path) -> Result<SpaKey, KeyFileError> {
    read_secret(path, KeyKind::SpaKey).map(|b| SpaKey::from_bytes(&b))
}

/// Loads an Ed25519 identity key file (`sesame-identity-v1`, secret).
pub fn load_identity(path: &Path) -> Result<IdentityKey, KeyFileError> {
    read_secret(path, KeyKind::Identity).map(|b| IdentityKey::from_seed(&b))
}

/// Loads the server's X25519 key file (`sesame-server-v1`, secret).
pub fn load_server_key(path: &Path) -> Result<ServerKey, KeyFileError> {
    read_secret(path, KeyKind::Server).map(|b| ServerKey::from_bytes(&b))
}

/// Loads a TOTP secret file (`sesame-totp-v1`, secret).
pub fn load_totp_secret(path: &Path) -> Result<TotpSecret, KeyFileError> {
    let bytes = read_secret(path, KeyKind::Totp)?;
    TotpSecret::new(&bytes[..]).map_err(|e| KeyFileError::Invalid {
        file: display(path),
        kind: KeyKind::Totp,
        reason: e.to_string(),
    })
}

fn identity_from(file: &str, bytes: &[u8; KEY_LEN]) -> Result<IdentityPublic, KeyFileError> {
    IdentityPublic::from_bytes(bytes).map_err(|e| KeyFileError::Invalid {
        file: file.to_string(),
        kind: KeyKind::IdentityPublic,
        reason: e.to_string(),
    })
}

/// Parses an inline `sesame-identity-pub-v1:...` line.
pub fn parse_identity_public(text: &str) -> Result<IdentityPublic, KeyFileError> {
    let bytes = parse_line(INLINE, text, KeyKind::IdentityPublic)?;
    identity_from(INLINE, &bytes)
}

/// Parses an inline `sesame-server-pub-v1:...` line.
pub fn parse_server_public(text: &str) -> Result<ServerPublic, KeyFileError> {
    parse_line(INLINE, text, KeyKind::ServerPublic).map(|b| ServerPublic(*b))
}

/// Loads an Ed25519 public key file (`sesame-identity-pub-v1`).
pub fn load_identity_public(path: &Path) -> Result<IdentityPublic, KeyFileError> {
    let bytes = read_public(path, KeyKind::IdentityPublic)?;
    identity_from(&display(path), &bytes)
}

/// Loads the server's X25519 public key file (`sesame-server-pub-v1`).
pub fn load_server_public(path: &Path) -> Result<ServerPublic, KeyFileError> {
    read_public(path, KeyKind::ServerPublic).map(ServerPublic)
}

/// True when `value` is a key line (`KIND:...` with a known kind) rather
/// than a path.
fn is_inline(value: &str) -> bool {
    value
        .trim()
        .split_once(':')
        .is_some_and(|(prefix, _)| KeyKind::from_prefix(prefix).is_some())
}

/// An Ed25519 public key given in a config either inline
/// (`sesame-identity-pub-v1:...`) or as the path of a file holding that
/// line (a leading `~/` is expanded).
pub fn identity_public(value: &str) -> Result<IdentityPublic, KeyFileError> {
    if is_inline(value) {
        parse_identity_public(value)
    } else {
        load_identity_public(&expand_home(value))
    }
}

/// The server's X25519 public key given either inline
/// (`sesame-server-pub-v1:...`) or as the path of a file holding that line
/// (a leading `~/` is expanded).
pub fn server_public(value: &str) -> Result<ServerPublic, KeyFileError> {
    if is_inline(value) {
        parse_server_public(value)
    } else {
        load_server_public(&expand_home(value))
    }
}

/// `path` with a leading `~/` replaced by `$HOME/` (unchanged when HOME is
/// unset or the path does not start with `~/`).
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// Writes a secret key file: mode 0600 from its creation. Without `force`
/// the file is created with `O_EXCL` and an existing file is never touched;
/// with `force` the key is written to a temporary file in the same directory
/// that then replaces `path` atomically.
pub fn write_secret(
    path: &Path,
    kind: KeyKind,
    bytes: &[u8; KEY_LEN],
    force: bool,
) -> Result<(), KeyFileError> {
    if !kind.is_secret() {
        return Err(KeyFileError::WrongWriter {
            file: display(path),
            kind,
            use_instead: "write_public",
        });
    }
    write_key(path, &encode_line(kind, bytes), 0o600, force)
}

/// Writes a public key file (mode 0644, less the umask), with the same
/// creation rules as [`write_secret`].
pub fn write_public(
    path: &Path,
    kind: KeyKind,
    bytes: &[u8; KEY_LEN],
    force: bool,
) -> Result<(), KeyFileError> {
    if kind.is_secret() {
        return Err(KeyFileError::WrongWriter {
            file: display(path),
            kind,
            use_instead: "write_secret",
        });
    }
    write_key(path, &encode_line(kind, bytes), 0o644, force)
}

fn write_key(path: &Path, line: &str, mode: u32, force: bool) -> Result<(), KeyFileError> {
    let write_err = |source| KeyFileError::Write {
        file: display(path),
        source,
    };
    let create = |target: &Path| {
        crate::os::create_mode(OpenOptions::new().write(true).create_new(true), mode).open(target)
    };
    let fill = |mut file: File| -> io::Result<()> {
        file.write_all(line.as_bytes())?;
        file.sync_all()
    };
    if !force {
        let file = create(path).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    file: display(path),
                }
            } else {
                write_err(source)
            }
        })?;
        if let Err(e) = fill(file) {
            let _ = std::fs::remove_file(path);
            return Err(write_err(e));
        }
        return Ok(());
    }
    let name = path
        .file_name()
        .ok_or_else(|| write_err(io::Error::other("not a file name")))?;
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(|e| write_err(io::Error::other(e.to_string())))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{suffix}"));
    let tmp = path.with_file_name(tmp_name);
    let result = create(&tmp)
        .and_then(fill)
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    // Make the rename durable (best effort: some file systems refuse).
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let mut r = [0u8; 8];
            getrandom::fill(&mut r).unwrap();
            let dir = std::env::temp_dir().join(format!(
                "sesame-keys-{tag}-{}-{}",
                std::process::id(),
                u64::from_le_bytes(r)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    const BYTES: [u8; 32] = [0x42; 32];

    #[test]
    fn every_kind_round_trips() {
        let dir = TempDir::new("rt");
        let seed = [7u8; 32];
        let identity = IdentityKey::from_seed(&seed);
        let server = ServerKey::from_bytes(&[9u8; 32]);

        let p = dir.path("spa");
        write_secret(&p, KeyKind::SpaKey, &BYTES, false).unwrap();
        assert_eq!(mode_of(&p), 0o600);
        assert_eq!(load_spa_key(&p).unwrap(), SpaKey::from_bytes(&BYTES));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("sesame-spa-key-v1:"), "{text}");
        assert!(text.ends_with("=\n"), "{text}");

        let p = dir.path("id");
        write_secret(&p, KeyKind::Identity, &identity.to_seed(), false).unwrap();
        assert_eq!(load_identity(&p).unwrap().public(), identity.public());

        let p = dir.path("id.pub");
        write_public(
            &p,
            KeyKind::IdentityPublic,
            &identity.public().to_bytes(),
            false,
        )
        .unwrap();
        assert_eq!(load_identity_public(&p).unwrap(), identity.public());
        let line = std::fs::read_to_string(&p).unwrap();
        assert_eq!(parse_identity_public(&line).unwrap(), identity.public());
        assert_eq!(identity_public(&line).unwrap(), identity.public());
        assert_eq!(
            identity_public(p.to_str().unwrap()).unwrap(),
            identity.public()
        );

        let p = dir.path("server");
        write_secret(&p, KeyKind::Server, &server.to_bytes(), false).unwrap();
        assert_eq!(load_server_key(&p).unwrap().public(), server.public());

        let p = dir.path("server.pub");
        write_public(
            &p,
            KeyKind::ServerPublic,
            &server.public().to_bytes(),
            false,
        )
        .unwrap();
        let line = std::fs::read_to_string(&p).unwrap();
        assert_eq!(parse_server_public(&line).unwrap(), server.public());
        assert_eq!(server_public(line.trim()).unwrap(), server.public());
        assert_eq!(server_public(p.to_str().unwrap()).unwrap(), server.public());

        let p = dir.path("totp");
        write_secret(&p, KeyKind::Totp, &BYTES, false).unwrap();
        assert_eq!(load_totp_secret(&p).unwrap().as_bytes(), &BYTES[..]);
    }

    #[test]
    fn known_line_decodes_to_known_bytes() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8;
        }
        let line = encode_line(KeyKind::ServerPublic, &bytes);
        assert_eq!(
            &line[..],
            "sesame-server-pub-v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
        );
        assert_eq!(
            parse_server_public(
                "  sesame-server-pub-v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n"
            )
            .unwrap(),
            ServerPublic(bytes)
        );
    }

    #[test]
    fn wrong_kind_prefix_names_both_kinds() {
        let server = encode_line(KeyKind::ServerPublic, &BYTES);
        let err = parse_identity_public(&server).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, KeyFileError::WrongKind { .. }), "{msg}");
        assert!(msg.contains("`sesame-identity-pub-v1:...`"), "{msg}");
        assert!(
            msg.contains("found an SPA server public key (`sesame-server-pub-v1:...`)"),
            "{msg}"
        );

        // The secret half where the public one belongs: a pointed hint.
        let secret = encode_line(KeyKind::Identity, &BYTES);
        let msg = identity_public(&secret).unwrap_err().to_string();
        assert!(msg.contains("SECRET half"), "{msg}");
        assert!(!msg.contains(&secret[20..40]), "{msg}");

        let msg = parse_server_public("ssh-ed25519:AAAA")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown kind `ssh-ed25519`"), "{msg}");
        let msg = parse_server_public("no prefix at all")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no `KIND:` prefix"), "{msg}");
        let msg = parse_server_public("").unwrap_err().to_string();
        assert!(msg.contains("empty"), "{msg}");

        let dir = TempDir::new("kind");
        let p = dir.path("k");
        write_secret(&p, KeyKind::Totp, &BYTES, false).unwrap();
        let msg = load_spa_key(&p).unwrap_err().to_string();
        assert!(msg.starts_with(&p.display().to_string()), "{msg}");
        assert!(
            msg.contains(
                "expected a symmetric SPA key (`sesame-spa-key-v1:...`), found a TOTP secret"
            ),
            "{msg}"
        );
        // The public half where the secret belongs.
        let p = dir.path("id.pub");
        write_public(
            &p,
            KeyKind::IdentityPublic,
            &IdentityKey::from_seed(&BYTES).public().to_bytes(),
            false,
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let msg = load_identity(&p).unwrap_err().to_string();
        assert!(msg.contains("public half"), "{msg}");
    }

    #[test]
    fn bad_base64_and_wrong_length() {
        let err = parse_server_public("sesame-server-pub-v1:AAAA!AAA").unwrap_err();
        assert!(matches!(err, KeyFileError::BadBase64 { .. }), "{err}");
        assert!(
            err.to_string().contains("invalid character at position 5"),
            "{err}"
        );
        assert!(!err.to_string().contains('!'), "{err}");
        let err =
            parse_server_public("sesame-server-pub-v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
                .unwrap_err();
        assert!(matches!(err, KeyFileError::BadBase64 { .. }), "{err}");

        let short = format!("sesame-server-pub-v1:{}", STANDARD.encode([1u8; 16]));
        let err = parse_server_public(&short).unwrap_err();
        assert!(
            matches!(err, KeyFileError::WrongLength { len: 16, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("holds 32 bytes, this one decodes to 16"),
            "{err}"
        );
        let long = format!("sesame-server-pub-v1:{}", STANDARD.encode([1u8; 33]));
        assert!(matches!(
            parse_server_public(&long),
            Err(KeyFileError::WrongLength { len: 33, .. })
        ));
        let two = format!(
            "{}{}",
            encode_line(KeyKind::ServerPublic, &BYTES).as_str(),
            encode_line(KeyKind::ServerPublic, &BYTES).as_str()
        );
        assert!(parse_server_public(&two)
            .unwrap_err()
            .to_string()
            .contains("more than one line"));
        // The identity point is a weak Ed25519 key.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let line = encode_line(KeyKind::IdentityPublic, &weak);
        assert!(matches!(
            parse_identity_public(&line),
            Err(KeyFileError::Invalid { .. })
        ));
    }

    #[test]
    fn a_store_password_file_follows_the_rules_of_secrets() {
        let dir = TempDir::new("pass");
        let p = dir.path("redis.pass");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private_text(&p).unwrap_err();
        assert!(matches!(err, KeyFileError::TooOpen { .. }), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private_text(&p).unwrap().as_str(), "s3cret");
        // A missing file is refused by name.
        let err = read_private_text(&dir.path("missing.pass")).unwrap_err();
        assert!(err.to_string().contains("missing.pass"), "{err}");
    }

    #[test]
    fn open_secret_files_are_refused_like_ssh() {
        let dir = TempDir::new("perm");
        let p = dir.path("spa.key");
        write_secret(&p, KeyKind::SpaKey, &BYTES, false).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o606] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load_spa_key(&p).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, KeyFileError::TooOpen { .. }), "{msg}");
            assert!(msg.contains(&format!("chmod 600 {}", p.display())), "{msg}");
            assert!(msg.contains(&format!("permissions {mode:04o}")), "{msg}");
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        load_spa_key(&p).unwrap();
        // Someone else's key file (only root can make one here).
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&p, Some(4242), None).unwrap();
            let err = load_spa_key(&p).unwrap_err();
            assert!(
                matches!(err, KeyFileError::BadOwner { owner: 4242, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("owned by uid 4242"), "{err}");
            std::os::unix::fs::chown(&p, Some(0), None).unwrap();
            load_spa_key(&p).unwrap();
        }
        // Public files need no such care.
        let pubfile = dir.path("s.pub");
        write_public(&pubfile, KeyKind::ServerPublic, &BYTES, false).unwrap();
        std::fs::set_permissions(&pubfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        load_server_public(&pubfile).unwrap();
        // A directory is not a key file.
        let err = load_spa_key(&dir.0).unwrap_err();
        assert!(matches!(err, KeyFileError::NotRegular { .. }), "{err}");
        let err = load_spa_key(&dir.path("missing")).unwrap_err();
        assert!(err.to_string().contains("cannot read key file"), "{err}");
    }

    #[test]
    fn existing_files_are_not_overwritten_without_force() {
        let dir = TempDir::new("excl");
        let p = dir.path("k");
        write_secret(&p, KeyKind::SpaKey, &BYTES, false).unwrap();
        let err = write_secret(&p, KeyKind::SpaKey, &[1; 32], false).unwrap_err();
        assert!(matches!(err, KeyFileError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(load_spa_key(&p).unwrap(), SpaKey::from_bytes(&BYTES));
        // With force, replaced atomically and private even if the old file
        // was not.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret(&p, KeyKind::SpaKey, &[1; 32], true).unwrap();
        assert_eq!(mode_of(&p), 0o600);
        assert_eq!(load_spa_key(&p).unwrap(), SpaKey::from_bytes(&[1; 32]));
        let leftovers: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
        // A symlink to another file is not written through.
        let target = dir.path("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            write_secret(&link, KeyKind::SpaKey, &BYTES, false),
            Err(KeyFileError::Exists { .. })
        ));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        // Kinds go to the right writer.
        assert!(matches!(
            write_public(&dir.path("x"), KeyKind::SpaKey, &BYTES, false),
            Err(KeyFileError::WrongWriter { .. })
        ));
        assert!(matches!(
            write_secret(&dir.path("x"), KeyKind::ServerPublic, &BYTES, false),
            Err(KeyFileError::WrongWriter { .. })
        ));
    }

    #[test]
    fn errors_and_debug_never_show_secret_bytes() {
        let dir = TempDir::new("leak");
        let p = dir.path("k");
        write_secret(&p, KeyKind::SpaKey, &BYTES, false).unwrap();
        let line = std::fs::read_to_string(&p).unwrap();
        let b64 = line.trim().split_once(':').unwrap().1.to_string();
        let mut shown = Vec::new();
        shown.push(format!("{:?}", load_spa_key(&p).unwrap()));
        shown.push(format!("{}", load_identity(&p).unwrap_err()));
        shown.push(format!("{:?}", load_identity(&p).unwrap_err()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        shown.push(format!("{:?}", load_spa_key(&p).unwrap_err()));
        for s in &shown {
            assert!(!s.contains(&b64[..12]), "{s}");
        }
    }

    #[test]
    fn home_is_expanded() {
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(expand_home("~/x/y"), PathBuf::from(home).join("x/y"));
        }
        assert_eq!(expand_home("/etc/k"), PathBuf::from("/etc/k"));
        assert_eq!(expand_home("~user/k"), PathBuf::from("~user/k"));
    }
}
