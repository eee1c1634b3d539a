//! Client profiles: `~/.config/sesame/client.toml`, so that
//! `sesame knock myserver ssh` needs no port list on the command line.
//!
//! ```toml
//! [server.myserver]
//! host = "server.example.org"
//! door.ssh = ["7000", "8000:udp", "9000"]
//! # optional per-server defaults
//! delay_ms = 100
//! family = "ipv6"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sesame_core::{DoorError, Knock};

/// A parsed client config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Servers by the short name used on the command line.
    #[serde(default)]
    pub server: BTreeMap<String, ServerProfile>,
}

/// One server and the doors the user may knock on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerProfile {
    /// Host name or address to knock.
    pub host: String,
    /// Door name → knock sequence (`port[:tcp|udp]` strings).
    #[serde(default)]
    pub door: BTreeMap<String, Vec<String>>,
    /// Delay between knocks in milliseconds.
    pub delay_ms: Option<u64>,
    /// "ipv4" or "ipv6" to force a family.
    pub family: Option<String>,
}

/// Why a profile could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Unreadable file.
    #[error("{path}: cannot read client config: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Bad TOML or unknown key.
    #[error("{path}: {source}")]
    Syntax {
        /// File.
        path: String,
        /// Parser error, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A sequence element is invalid.
    #[error("{path}: server {server:?} door {door:?} sequence[{index}] {item:?}: {source}")]
    BadKnock {
        /// File.
        path: String,
        /// Server name.
        server: String,
        /// Door name.
        door: String,
        /// Position in the sequence.
        index: usize,
        /// Offending text.
        item: String,
        /// Cause.
        source: Box<DoorError>,
    },
    /// The server has no such door.
    #[error("{path}: server {server:?} has no door {door:?} (known: {known})")]
    UnknownDoor {
        /// File.
        path: String,
        /// Server name.
        server: String,
        /// Requested door.
        door: String,
        /// Doors that exist.
        known: String,
    },
}

/// The default client config location: `$XDG_CONFIG_HOME/sesame/client.toml`
/// or `~/.config/sesame/client.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("sesame").join("client.toml"))
}

impl ClientConfig {
    /// Reads a client config. A missing file at the default location is an
    /// empty config; the caller decides whether that is an error.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ProfileError::Syntax {
            path: path.display().to_string(),
            source: Box::new(source),
        })
    }

    /// Looks up `server`/`door` and parses its sequence.
    pub fn sequence(
        &self,
        path: &Path,
        server: &str,
        door: &str,
    ) -> Option<Result<(&ServerProfile, Vec<Knock>), ProfileError>> {
        let profile = self.server.get(server)?;
        let Some(items) = profile.door.get(door) else {
            return Some(Err(ProfileError::UnknownDoor {
                path: path.display().to_string(),
                server: server.into(),
                door: door.into(),
                known: profile.door.keys().cloned().collect::<Vec<_>>().join(", "),
            }));
        };
        let knocks = items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                item.parse().map_err(|source| ProfileError::BadKnock {
                    path: path.display().to_string(),
                    server: server.into(),
                    door: door.into(),
                    index,
                    item: item.clone(),
                    source: Box::new(source),
                })
            })
            .collect::<Result<Vec<_>, _>>();
        Some(knocks.map(|k| (profile, k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_lookup() {
        let cfg: ClientConfig = toml::from_str(
            r#"
            [server.home]
            host = "192.0.2.1"
            door.ssh = ["7000", "8000:udp"]
            delay_ms = 50
            "#,
        )
        .unwrap();
        let p = Path::new("c.toml");
        let (profile, knocks) = cfg.sequence(p, "home", "ssh").unwrap().unwrap();
        assert_eq!(profile.host, "192.0.2.1");
        assert_eq!(knocks.len(), 2);
        assert!(cfg.sequence(p, "elsewhere", "ssh").is_none());
        let err = cfg.sequence(p, "home", "vpn").unwrap().unwrap_err();
        assert!(err.to_string().contains("no door \"vpn\" (known: ssh)"));
    }

    #[test]
    fn bad_profiles_are_reported() {
        assert!(toml::from_str::<ClientConfig>("[server.a]\nhost='x'\nbogus=1\n").is_err());
        let cfg: ClientConfig =
            toml::from_str("[server.a]\nhost='x'\ndoor.d=['1','x2']\n").unwrap();
        let err = cfg
            .sequence(Path::new("c.toml"), "a", "d")
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("sequence[1] \"x2\""), "{err}");
    }
}
