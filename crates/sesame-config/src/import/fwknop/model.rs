//! What the fwknop importer produces: the parsed configuration, the
//! remarks for `sesame import fwknop`, and why a file is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sesame_client::located::{FileError, Located};

use super::values::*;

/// Why a stanza without OPEN_PORTS protects nothing until told what.
pub(super) const NO_OPEN_PORTS: &str =
    "the stanza has no OPEN_PORTS, and nothing else names a service to protect. fwknopd then \
     opened any port the packet asked for, behind the host's default-drop firewall; Sesame \
     closes and opens only the services it protects: name them with `sesamed --fwknop-access \
     FILE --protect tcp/22` (repeatable), or give the stanza `OPEN_PORTS tcp/22`";

/// Why an fwknop configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum FwknopConfError {
    /// The file is unusable: permissions, reading, or an item in it.
    #[error(transparent)]
    File(FileError),
    /// The file as a whole is unusable.
    #[error("{path}: {message}")]
    Unusable {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

sesame_client::file_error_conversions!(FwknopConfError);

/// A remark for `sesame import fwknop`: a setting accepted but not carried
/// over, or carried over with a different meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// File of the setting.
    pub path: String,
    /// 1-based line of the setting.
    pub line: usize,
    /// The keyword.
    pub keyword: String,
    /// The stanza it concerns (index into [`FwknopDoor::stanzas`]), if any.
    pub stanza: Option<usize>,
    /// The remark.
    pub text: String,
}

/// What Sesame uses from fwknopd.conf, with where each value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwknopdSettings {
    /// UDP port SPA packets are sent to.
    pub port: u16,
    /// `MAX_SPA_PACKET_AGE`.
    pub max_age: Duration,
    /// Interfaces packets are accepted on (empty: every interface).
    pub interfaces: Vec<String>,
    /// Where `port` came from, for the import comments.
    pub port_origin: String,
    /// Where `max_age` came from.
    pub max_age_origin: String,
    /// Where `interfaces` came from.
    pub interfaces_origin: String,
    /// Settings accepted but not carried over.
    pub notes: Vec<Note>,
    /// `ENABLE_IPT_FORWARDING` (or `ENABLE_FIREWD_FORWARDING`): NAT access.
    pub nat_forwarding: bool,
    /// `ENABLE_IPT_LOCAL_NAT` (or `ENABLE_FIREWD_LOCAL_NAT`): local NAT.
    pub nat_local: bool,
}

impl Default for FwknopdSettings {
    fn default() -> Self {
        FwknopdSettings {
            port: DEFAULT_PORT,
            max_age: DEFAULT_MAX_AGE,
            interfaces: Vec::new(),
            port_origin: "fwknopd's default (udp port 62201)".into(),
            max_age_origin: "fwknopd's default (MAX_SPA_PACKET_AGE 120)".into(),
            interfaces_origin: "no fwknopd.conf: fwknopd sniffed eth0 by default".into(),
            notes: Vec::new(),
            nat_forwarding: false,
            nat_local: false,
        }
    }
}

/// A parsed fwknop server configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwknopConfig {
    /// The top access.conf.
    pub access_conf: PathBuf,
    /// The fwknopd.conf, if one was given.
    pub fwknopd_conf: Option<PathBuf>,
    /// Every access file read, in order (the top one first).
    pub files: Vec<PathBuf>,
    /// Where each stanza's SOURCE line is (parallel to `door.stanzas`).
    pub origins: Vec<(PathBuf, usize)>,
    /// The door, with fwknopd.conf's port and packet age.
    pub door: FwknopDoor,
    /// fwknopd.conf's settings.
    pub settings: FwknopdSettings,
    /// Remarks on access.conf settings (fwknopd.conf's are in `settings`).
    pub notes: Vec<Note>,
}

/// A located [`FwknopConfError::Invalid`].
pub(super) fn invalid(
    path: &Path,
    line: usize,
    keyword: &str,
    message: impl ToString,
) -> FwknopConfError {
    FwknopConfError::from(Located {
        path: path.display().to_string(),
        line,
        column: None,
        item: keyword.to_string(),
        message: message.to_string(),
    })
}
