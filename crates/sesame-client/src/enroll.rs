//! Enrollment in one line: the server's admin makes a URI (`sesame invite`)
//! that holds everything a client needs to knock an SPA door (host, door,
//! port, key and, in public-key mode, the server's public key), and the
//! device installs it (`sesame enroll URI`): the key file is written 0600
//! and the profile added to the client config. Nothing is typed twice, so
//! client and server cannot disagree on keys or settings (fwknop's most
//! common support problem, `HMAC_COMPAREFAIL`).
//!
//! ```text
//! sesame://enroll?v=1&server=myserver&host=server.example&door=ssh&port=62201
//!     &key=sesame-spa-key-v1%3A...
//! ```
//!
//! A URI carries a secret key: send it the way a password is sent (or as a
//! QR code shown once). Query values are percent-encoded UTF-8.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sesame_core::Service;
use zeroize::Zeroizing;

use crate::keys::{self, KeyFileError, KeyKind};
use crate::profile::{ClientConfig, ProfileError};

/// The URI's scheme and path.
pub const PREFIX: &str = "sesame://enroll?";

/// The secret an enrolled device knocks with.
#[derive(Clone, PartialEq, Eq)]
pub enum EnrolledKey {
    /// A symmetric SPA key (`sesame-spa-key-v1`).
    Symmetric(Zeroizing<[u8; 32]>),
    /// An identity seed (`sesame-identity-v1`) and the server's X25519
    /// public key (`sesame-server-pub-v1`).
    Public {
        /// The identity seed (secret).
        identity: Zeroizing<[u8; 32]>,
        /// The server's public key.
        server_public: [u8; 32],
    },
}

impl std::fmt::Debug for EnrolledKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EnrolledKey::Symmetric(_) => "Symmetric(..)",
            EnrolledKey::Public { .. } => "Public(..)",
        })
    }
}

/// Everything a device needs to knock one SPA door.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollment {
    /// The server's name in the client config.
    pub server: String,
    /// Host name or address to knock.
    pub host: String,
    /// The door's name.
    pub door: String,
    /// The door's `spa_port`.
    pub port: u16,
    /// Services to ask for (empty: all the user may open).
    pub services: Vec<Service>,
    /// The secret.
    pub key: EnrolledKey,
}

/// Why a URI cannot be read or installed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// Not a `sesame://enroll?` URI, or a value is missing or malformed.
    #[error("enrollment URI: {0}")]
    Uri(String),
    /// A key in the URI or a key file is unusable.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The client config cannot be read.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The door is already in the client config (nothing was changed).
    #[error(
        "{config}: server {server:?} already has a door {door:?}; remove it first to enroll again"
    )]
    AlreadyEnrolled {
        /// The client config.
        config: String,
        /// The server's name.
        server: String,
        /// The door's name.
        door: String,
    },
    /// The config names the server with another host (nothing was changed).
    #[error("{config}: server {server:?} has host {existing:?}, the URI says {host:?}; enroll under another name with --name")]
    OtherHost {
        /// The client config.
        config: String,
        /// The server's name.
        server: String,
        /// Its host in the config.
        existing: String,
        /// The URI's host.
        host: String,
    },
    /// Writing the client config failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The client config.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

fn uri_error(what: impl Into<String>) -> EnrollError {
    EnrollError::Uri(what.into())
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn decode(name: &str, value: &str) -> Result<String, EnrollError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| uri_error(format!("{name}: bad %-escape")))?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| uri_error(format!("{name}: not UTF-8")))
}

/// A name usable as a TOML bare key and a file name.
fn plain_name(what: &str, name: &str) -> Result<(), EnrollError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(uri_error(format!(
            "{what} {name:?}: use 1 to 64 letters, digits, '-' or '_'"
        )))
    }
}

impl Enrollment {
    /// The URI for this enrollment.
    pub fn to_uri(&self) -> Zeroizing<String> {
        let mut uri = Zeroizing::new(String::from(PREFIX));
        let mut field = |name: &str, value: &str| {
            if !uri.ends_with('?') {
                uri.push('&');
            }
            uri.push_str(name);
            uri.push('=');
            encode(value, &mut uri);
        };
        field("v", "1");
        field("server", &self.server);
        field("host", &self.host);
        field("door", &self.door);
        field("port", &self.port.to_string());
        if !self.services.is_empty() {
            let list: Vec<String> = self.services.iter().map(|s| s.to_string()).collect();
            field("services", &list.join(","));
        }
        match &self.key {
            EnrolledKey::Symmetric(k) => {
                field("key", keys::encode_line(KeyKind::SpaKey, k).trim_end())
            }
            EnrolledKey::Public {
                identity,
                server_public,
            } => {
                field(
                    "identity",
                    keys::encode_line(KeyKind::Identity, identity).trim_end(),
                );
                field(
                    "server_public",
                    keys::encode_line(KeyKind::ServerPublic, server_public).trim_end(),
                );
            }
        }
        uri
    }

    /// Reads a URI made by [`Enrollment::to_uri`]; every error names the
    /// offending field.
    pub fn parse(uri: &str) -> Result<Enrollment, EnrollError> {
        let query = uri
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| uri_error(format!("does not start with {PREFIX}")))?;
        let mut fields: Vec<(String, Zeroizing<String>)> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| uri_error(format!("{pair:?} has no '='")))?;
            if fields.iter().any(|(n, _)| n == name) {
                return Err(uri_error(format!("{name} given twice")));
            }
            fields.push((name.to_string(), Zeroizing::new(decode(name, value)?)));
        }
        const KNOWN: [&str; 9] = [
            "v",
            "server",
            "host",
            "door",
            "port",
            "services",
            "key",
            "identity",
            "server_public",
        ];
        if let Some((name, _)) = fields.iter().find(|(n, _)| !KNOWN.contains(&n.as_str())) {
            return Err(uri_error(format!(
                "unknown field {name:?} (a newer sesame made it?)"
            )));
        }
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let need = |name: &str| get(name).ok_or_else(|| uri_error(format!("{name} is missing")));
        if need("v")? != "1" {
            return Err(uri_error(format!(
                "version {:?}: this sesame reads version 1",
                need("v")?
            )));
        }
        let server = need("server")?.to_string();
        plain_name("server", &server)?;
        let door = need("door")?.to_string();
        plain_name("door", &door)?;
        let host = need("host")?.to_string();
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '"') {
            return Err(uri_error(format!(
                "host {host:?} is not a host name or address"
            )));
        }
        let port = need("port")?
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| uri_error(format!("port {:?}: expected 1 to 65535", get("port"))))?;
        let services = match get("services") {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|s| {
                    s.parse::<Service>()
                        .map_err(|e| uri_error(format!("services {s:?}: {e}")))
                })
                .collect::<Result<_, _>>()?,
        };
        let key = match (get("key"), get("identity"), get("server_public")) {
            (Some(k), None, None) => {
                EnrolledKey::Symmetric(keys::parse_line("URI key", k, KeyKind::SpaKey)?)
            }
            (None, Some(i), Some(s)) => EnrolledKey::Public {
                identity: keys::parse_line("URI identity", i, KeyKind::Identity)?,
                server_public: *keys::parse_line("URI server_public", s, KeyKind::ServerPublic)?,
            },
            _ => {
                return Err(uri_error(
                    "give key (symmetric), or identity with server_public (public-key mode)",
                ))
            }
        };
        Ok(Enrollment {
            server,
            host,
            door,
            port,
            services,
            key,
        })
    }

    /// Installs the enrollment: writes the key file into `keys/` next to
    /// `config` (made 0700; the file 0600, never over an existing one) and
    /// adds the door to `config` (created if missing). Checks everything
    /// before writing anything. Returns the key file.
    pub fn install(&self, config: &Path) -> Result<PathBuf, EnrollError> {
        let existing = if config.symlink_metadata().is_ok() {
            Some(ClientConfig::load(config)?)
        } else {
            None
        };
        let server = existing.as_ref().and_then(|c| c.server.get(&self.server));
        if let Some(profile) = server {
            if profile.doors.contains_key(&self.door) {
                return Err(EnrollError::AlreadyEnrolled {
                    config: config.display().to_string(),
                    server: self.server.clone(),
                    door: self.door.clone(),
                });
            }
            if !profile.host.eq_ignore_ascii_case(&self.host) {
                return Err(EnrollError::OtherHost {
                    config: config.display().to_string(),
                    server: self.server.clone(),
                    existing: profile.host.clone(),
                    host: self.host.clone(),
                });
            }
        }
        let dir = config.parent().unwrap_or(Path::new(".")).join("keys");
        create_private_dir(&dir).map_err(|source| EnrollError::Write {
            path: dir.display().to_string(),
            source,
        })?;
        let key_file = dir.join(format!("{}-{}.key", self.server, self.door));
        let credential = match &self.key {
            EnrolledKey::Symmetric(k) => {
                keys::write_secret(&key_file, KeyKind::SpaKey, k, false)?;
                format!("key = {}\n", toml_string(&key_file.display().to_string()))
            }
            EnrolledKey::Public {
                identity,
                server_public,
            } => {
                keys::write_secret(&key_file, KeyKind::Identity, identity, false)?;
                let public = keys::encode_line(KeyKind::ServerPublic, server_public);
                format!(
                    "identity = {}\nserver_public = {}\n",
                    toml_string(&key_file.display().to_string()),
                    toml_string(public.trim_end())
                )
            }
        };
        let mut text = String::new();
        if server.is_none() {
            let _ = write!(
                text,
                "\n[server.{}]\nhost = {}\n",
                self.server,
                toml_string(&self.host)
            );
        }
        let _ = write!(
            text,
            "\n[server.{}.spa.{}]\nport = {}\n{credential}",
            self.server, self.door, self.port
        );
        if !self.services.is_empty() {
            let list: Vec<String> = self
                .services
                .iter()
                .map(|s| toml_string(&s.to_string()))
                .collect();
            let _ = writeln!(text, "services = [{}]", list.join(", "));
        }
        append(config, &text).map_err(|source| EnrollError::Write {
            path: config.display().to_string(),
            source,
        })?;
        // The result must read back: a config we cannot read is a bug.
        ClientConfig::load(config)?;
        Ok(key_file)
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    crate::os::dir_mode(&mut builder, 0o700);
    builder.create(dir)
}

fn append(config: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = config.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    crate::os::create_mode(&mut options, 0o600);
    let mut file = options.open(config)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Enrollment {
        Enrollment {
            server: "home".into(),
            host: "server.example".into(),
            door: "ssh".into(),
            port: 62201,
            services: vec!["tcp/22".parse().unwrap()],
            key: EnrolledKey::Symmetric(Zeroizing::new([7u8; 32])),
        }
    }

    #[test]
    fn a_uri_reads_back_to_the_same_enrollment() {
        let e = sample();
        let uri = e.to_uri();
        assert!(uri.starts_with(PREFIX), "{}", uri.as_str());
        let query = &uri[PREFIX.len()..];
        assert!(!query.contains(['+', '/', ' ', ':']), "{query}");
        assert_eq!(Enrollment::parse(&uri).unwrap(), e);
        let public = Enrollment {
            key: EnrolledKey::Public {
                identity: Zeroizing::new([1u8; 32]),
                server_public: [2u8; 32],
            },
            services: Vec::new(),
            ..sample()
        };
        assert_eq!(Enrollment::parse(&public.to_uri()).unwrap(), public);
    }

    #[test]
    fn bad_uris_are_refused_with_the_field_named() {
        let good = sample().to_uri().to_string();
        for (uri, needle) in [
            ("https://x".to_string(), "does not start with"),
            (good.replace("port=62201", "port=0"), "port"),
            (good.replace("port=62201", "port=99999"), "port"),
            (
                good.replace("server=home", "server=a%20b"),
                "server \"a b\"",
            ),
            (good.replace("door=ssh", "door=..%2Fx"), "door"),
            (good.replace("v=1", "v=2"), "version"),
            (good.replace("&door=ssh", ""), "door is missing"),
            (format!("{good}&door=x"), "door given twice"),
            (format!("{good}&colour=red"), "unknown field \"colour\""),
            (
                good.replace("key=sesame-spa-key-v1", "key=sesame-totp-v1"),
                "URI key",
            ),
            (
                good.replace("services=tcp%2F22", "services=tcp%2Fx"),
                "services",
            ),
            (good.replace("%3D", "%3"), "bad %-escape"),
        ] {
            let err = Enrollment::parse(&uri).expect_err(&uri).to_string();
            assert!(err.contains(needle), "{uri}: {err}");
        }
    }

    #[test]
    fn install_writes_a_private_key_and_a_profile_that_knocks_the_door() {
        let dir = std::env::temp_dir().join(format!("sesame-enroll-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = dir.join("client.toml");
        let e = sample();
        let key_file = e.install(&config).unwrap();
        let cfg = ClientConfig::load(&config).unwrap();
        let (server, door) = cfg.door("home", "ssh").unwrap();
        assert_eq!(server.host, "server.example");
        let crate::profile::ClientDoor::Spa(spa) = door else {
            panic!("not an SPA door: {door:?}");
        };
        assert_eq!(spa.port, 62201);
        assert_eq!(
            spa.load_key().unwrap().key_id(),
            sesame_core::spa::SpaKey::from_bytes(&[7u8; 32]).key_id()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A second door of the same server goes under the same [server.home].
        let other = Enrollment {
            door: "web".into(),
            ..sample()
        };
        other.install(&config).unwrap();
        assert_eq!(
            ClientConfig::load(&config).unwrap().server["home"]
                .doors
                .len(),
            2
        );
        // The same door again, or the name with another host: refused,
        // nothing written.
        let before = std::fs::read_to_string(&config).unwrap();
        let err = e.install(&config).unwrap_err().to_string();
        assert!(err.contains("already has a door \"ssh\""), "{err}");
        let moved = Enrollment {
            door: "vpn".into(),
            host: "elsewhere.example".into(),
            ..sample()
        };
        let err = moved.install(&config).unwrap_err().to_string();
        assert!(err.contains("has host \"server.example\""), "{err}");
        assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
