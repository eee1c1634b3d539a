//! fwknop server configuration (`access.conf`, `fwknopd.conf`) with
//! fwknop's meaning, converted into Sesame doors.
//!
//! The data model below is what the daemon consumes (`DoorKind::Fwknop`).
//!
//! # Syntax (both files, as fwknopd reads them)
//! - One `KEYWORD value` per line. Lines whose first non-blank character is
//!   `#` or `;` are comments; blank lines are skipped.
//! - A trailing `:` on the keyword is dropped (`SOURCE: ANY`).
//! - The value ends at the first `;` (fwknopd.conf lines usually end with
//!   one) and surrounding whitespace is trimmed.
//! - Keywords are upper case, as fwknopd matches them.
//!
//! # access.conf
//! Every `SOURCE` line starts a stanza; the keywords after it (in the same
//! file) belong to it. `%include FILE` and `%include_folder DIR` read other
//! files in place (their stanzas are appended in order; a stanza never
//! continues across files, and keywords after an `%include` still belong to
//! the stanza that was open before it, as in fwknopd). `%include_keys FILE`
//! (inside a stanza) reads only `KEY`, `KEY_BASE64`, `HMAC_KEY` and
//! `HMAC_KEY_BASE64` lines into the open stanza. Relative paths are opened
//! from the current directory, as fwknopd does (under a service manager
//! that is `/`): prefer absolute paths. `%include_folder` reads the files of
//! the folder whose names end in `.conf`, sorted by name (fwknopd took them
//! in directory order). `%include` nests at most [`MAX_INCLUDE_DEPTH`]
//! files deep, as in fwknopd, and a file that includes itself (directly or
//! not) is an error.
//!
//! Where fwknopd was lenient, Sesame refuses: unknown keywords, keywords
//! before the first `SOURCE`, a keyword given twice in a stanza (fwknopd
//! kept the last), `Y`/`N` values other than `Y`, `N`, `yes`, `no`. Every
//! error names `file:line` and the keyword; key values are never printed.
//!
//! Features Sesame does not have are refused with the reason: GPG (out of
//! scope), NAT and forwarding, command cycles and sudo. A stanza without
//! `OPEN_PORTS` may open what the client asks for among the services Sesame
//! protects (every stanza's `OPEN_PORTS` and [`load_protecting`]'s list),
//! minus its `RESTRICT_PORTS`: fwknopd relied on the host's default drop,
//! Sesame closes only what it protects.
//!
//! # fwknopd.conf
//! Sesame uses the SPA port (`PCAP_FILTER` of the form `udp port N` in
//! fwknopd's default pcap mode, `UDPSERV_PORT` with `ENABLE_UDP_SERVER Y`,
//! `NFQ_PORT` with `ENABLE_NFQ_CAPTURE Y`), `MAX_SPA_PACKET_AGE`, and the
//! interface (`PCAP_INTF` / `NFQ_INTERFACE`; `any` means every interface).
//! Every other fwknopd keyword is accepted with a [`Note`] for the import
//! output, except where ignoring it would widen access
//! (`ENABLE_SPA_PACKET_AGING N`, `ENABLE_DESTINATION_RULE Y`, a
//! `PCAP_FILTER` Sesame cannot reproduce) or it needs what Sesame lacks
//! (NAT and forwarding, `ACCESS_FOLDER`): those are errors. Unknown
//! keywords are errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sesame_core::door::Commands;
use sesame_core::{Door, Knock, Proto, Service, TcpFlags};

use crate::model::{Config, DaemonSettings, DoorKind};

mod access;
mod fwknopd;
mod model;
pub mod values;
use access::AccessParser;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
pub use fwknopd::parse_fwknopd;
use model::{invalid, NO_OPEN_PORTS};
pub use model::{FwknopConfError, FwknopConfig, FwknopdSettings, Note};
pub use values::*;

/// Reads an access.conf (with its includes) and, optionally, an
/// fwknopd.conf, with fwknop's meaning.
pub fn load(
    access_conf: &Path,
    fwknopd_conf: Option<&Path>,
) -> Result<FwknopConfig, FwknopConfError> {
    load_protecting(access_conf, fwknopd_conf, &[])
}

/// [`load`], with services to protect beyond the stanzas' `OPEN_PORTS`
/// (`sesamed --fwknop-access FILE --protect tcp/22`). A stanza without
/// `OPEN_PORTS` may open, as in fwknopd, whatever the client asks for minus
/// its `RESTRICT_PORTS`, but within what Sesame protects: every stanza's
/// `OPEN_PORTS` and `protect`. fwknopd relied on the host's default-drop
/// policy to close every other port; Sesame closes only what it protects,
/// and an accept cannot override another table's drop.
pub fn load_protecting(
    access_conf: &Path,
    fwknopd_conf: Option<&Path>,
    protect: &[Service],
) -> Result<FwknopConfig, FwknopConfError> {
    let settings = match fwknopd_conf {
        None => FwknopdSettings::default(),
        Some(path) => {
            sesame_client::secure_file::check_not_writable_by_others(path)?;
            let text = std::fs::read_to_string(path)
                .map_err(sesame_client::located::ReadError::of(path, "fwknopd.conf"))?;
            parse_fwknopd(&text, path)?
        }
    };
    let mut parser = AccessParser {
        port: settings.port,
        nat_forwarding: settings.nat_forwarding,
        slots: Vec::new(),
        stack: Vec::new(),
        files: Vec::new(),
        notes: Vec::new(),
    };
    parser.file(access_conf, 1, None, true)?;
    if parser.slots.is_empty() {
        return Err(FwknopConfError::Unusable {
            path: access_conf.display().to_string(),
            message: "no SOURCE stanza: every access rule starts with a SOURCE line".into(),
        });
    }
    let mut stanzas: Vec<FwknopStanza> = Vec::with_capacity(parser.slots.len());
    let mut origins = Vec::with_capacity(parser.slots.len());
    for slot in parser.slots {
        let (stanza, file, line) = slot.expect("every reserved stanza is finished");
        stanzas.push(stanza);
        origins.push((file, line));
    }
    let mut protected: Vec<Service> = protect.to_vec();
    for s in stanzas.iter().flat_map(|st| &st.open_ports) {
        if !protected.contains(s) {
            protected.push(*s);
        }
    }
    for (i, stanza) in stanzas.iter_mut().enumerate() {
        if !stanza.open_ports.is_empty() {
            continue;
        }
        let (file, line) = &origins[i];
        stanza.open_ports = protected
            .iter()
            .filter(|s| !stanza.restrict_ports.contains(s))
            .copied()
            .collect();
        if stanza.open_ports.is_empty() {
            return Err(invalid(file, *line, "SOURCE", NO_OPEN_PORTS));
        }
        let list: Vec<String> = stanza.open_ports.iter().map(ToString::to_string).collect();
        parser.notes.push(Note {
            path: file.display().to_string(),
            line: *line,
            keyword: "SOURCE".into(),
            stanza: Some(i),
            text: format!(
                "no OPEN_PORTS: the client may open what it asks for among the services Sesame protects ({}), as fwknopd opened what it asked for behind the host's default drop",
                list.join(", ")
            ),
        });
    }
    let nat = sesame_core::fwknop::stanza::FwknopNat {
        forwarding: settings.nat_forwarding,
        local: settings.nat_local,
        hosts: Vec::new(),
    };
    Ok(FwknopConfig {
        access_conf: access_conf.to_path_buf(),
        fwknopd_conf: fwknopd_conf.map(Path::to_path_buf),
        files: parser.files,
        origins,
        door: FwknopDoor {
            port: settings.port,
            max_age: settings.max_age,
            stanzas,
            nat,
        },
        settings,
        notes: parser.notes,
    })
}

impl FwknopConfig {
    /// Converts to Sesame's model: one door named [`DOOR_NAME`] that
    /// observes the SPA port, protects every stanza's `OPEN_PORTS`, and
    /// whose `open_for` is the longest grant a stanza can give. `path`
    /// becomes [`Config::path`].
    pub fn to_config(&self, path: &Path) -> Result<Config, FwknopConfError> {
        let door = Door {
            name: DOOR_NAME.to_string(),
            sequence: vec![Knock {
                port: self.door.port,
                proto: Proto::Udp,
            }],
            seq_timeout: crate::model::DEFAULT_SEQ_TIMEOUT,
            open_for: self.door.longest_grant(),
            tcp_flags: TcpFlags::default(),
            services: self.door.services(),
            target: None,
            on_open: Commands::default(),
            on_close: Commands::default(),
            guard: sesame_core::Guard::None,
            forwards: Vec::new(),
        };
        door.validate().map_err(|e| FwknopConfError::Unusable {
            path: self.access_conf.display().to_string(),
            message: format!("cannot build the fwknop door: {e}"),
        })?;
        let mut kinds = BTreeMap::new();
        kinds.insert(DOOR_NAME.to_string(), DoorKind::Fwknop(self.door.clone()));
        Ok(Config {
            path: path.to_path_buf(),
            daemon: DaemonSettings {
                interfaces: self.settings.interfaces.clone(),
                ..DaemonSettings::default()
            },
            doors: vec![door],
            kinds,
            ..Config::default()
        })
    }

    /// The equivalent Sesame TOML, with comments on each mapping (printed by
    /// `sesame import fwknop`). It contains the stanzas' keys.
    pub fn to_sesame_toml(&self) -> String {
        let mut out = String::new();
        let mut put = |text: &str| {
            out.push_str(text);
            out.push('\n');
        };
        put("# Sesame configuration converted from fwknop's by `sesame import fwknop`.");
        put(&format!("#   access.conf:  {}", self.access_conf.display()));
        for f in self.files.iter().skip(1) {
            put(&format!("#     included:   {}", f.display()));
        }
        match &self.fwknopd_conf {
            Some(p) => put(&format!("#   fwknopd.conf: {}", p.display())),
            None => put("#   fwknopd.conf: not given (fwknopd's defaults)"),
        }
        put("# Check it with `sesamed --check-config FILE`.");
        put(TOML_HEADER_NOTES);
        if !self.settings.notes.is_empty() {
            put("#");
            put("# fwknopd.conf settings not carried over:");
            for n in &self.settings.notes {
                put_note(&mut put, n);
            }
        }
        let general: Vec<&Note> = self.notes.iter().filter(|n| n.stanza.is_none()).collect();
        if !general.is_empty() {
            put("#");
            put("# access.conf settings not carried over:");
            for n in general {
                put_note(&mut put, n);
            }
        }
        put("");
        put("[daemon]");
        put_wrapped(
            &mut put,
            "# ",
            "# ",
            &format!("Interfaces: {}.", self.settings.interfaces_origin),
        );
        if self.settings.interfaces.is_empty() {
            put("# Sesame sees SPA packets on every interface unless this is set, e.g.:");
            put("# interfaces = [\"eth0\"]");
        } else {
            put("# Packets count only on these interfaces (matched by name, any link type).");
            let list: Vec<String> = self
                .settings
                .interfaces
                .iter()
                .map(|i| toml_str(i))
                .collect();
            put(&format!("interfaces = [{}]", list.join(", ")));
        }
        put("");
        put(&format!("[door.{DOOR_NAME}]"));
        put_wrapped(
            &mut put,
            "# ",
            "# ",
            &format!(
                "SPA port: {}. Observed through NFLOG and dropped; nothing listens on it.",
                self.settings.port_origin
            ),
        );
        put(&format!("fwknop_port = {}", self.door.port));
        put_wrapped(
            &mut put,
            "# ",
            "# ",
            &format!(
                "Accepted clock difference either way: {}.",
                self.settings.max_age_origin
            ),
        );
        put(&format!(
            "fwknop_max_age = {}",
            toml_duration(self.door.max_age)
        ));
        put(
            "# Services Sesame closes and opens per source: every stanza's OPEN_PORTS.\n\
             # Other ports are not filtered by Sesame.",
        );
        let services: Vec<String> = self
            .door
            .services()
            .iter()
            .map(|s| toml_str(&s.to_string()))
            .collect();
        put(&format!("protect = [{}]", services.join(", ")));
        put(
            "# The longest grant a stanza can give: the largest FW_ACCESS_TIMEOUT and\n\
             # MAX_FW_TIMEOUT (300 s when a stanza does not set it).",
        );
        put(&format!(
            "open_for = {}",
            toml_duration(self.door.longest_grant())
        ));
        let nat = &self.door.nat;
        if nat.forwarding {
            put("# ENABLE_IPT_FORWARDING Y: NAT access requests (fwknop -N) and FORCE_NAT.");
            put("nat_forwarding = true");
        }
        if nat.local {
            put("# ENABLE_IPT_LOCAL_NAT Y: local NAT requests (fwknop --nat-local).");
            put("nat_local = true");
        }
        if nat.forwarding || nat.local {
            let hosts: Vec<String> = nat
                .hosts
                .iter()
                .map(|(a, p)| toml_str(&format!("{a}/{p}")))
                .collect();
            put("# The inner networks NAT requests may name (none: every NAT host is refused).");
            put(&format!("nat_hosts = [{}]", hosts.join(", ")));
        }
        for (i, st) in self.door.stanzas.iter().enumerate() {
            put("");
            let (file, line) = &self.origins[i];
            put_wrapped(
                &mut put,
                "# ",
                "# ",
                &format!(
                    "Stanza {} of {}, SOURCE at {}:{}. Stanzas are tried in order; the first \
                     whose source matches and whose keys verify the packet wins.",
                    i + 1,
                    self.door.stanzas.len(),
                    file.display(),
                    line
                ),
            );
            for n in self.notes.iter().filter(|n| n.stanza == Some(i)) {
                put_note(&mut put, n);
            }
            put(&format!("[[door.{DOOR_NAME}.stanzas]]"));
            put_stanza(&mut put, st);
        }
        out
    }
}

/// General differences, printed once at the top of an imported config.
const TOML_HEADER_NOTES: &str = "#
# SECRETS: every stanza's KEY and HMAC key is copied into this file (as
# key_base64 and hmac_key_base64). Keep it private: owned by root, mode 0600
# (`chmod 0600 FILE`), like access.conf.
#
# Where Sesame differs from fwknopd:
# - SPA packets are observed through NFLOG on the UDP port: no libpcap and no
#   listening socket, on every interface type, over IPv4 and IPv6.
# - Access is an nftables set element in table inet sesame, closed by its
#   kernel timeout: no iptables/firewalld rules, nothing left open by a crash.
# - The replay cache is Sesame's own, always persisted in [daemon] state_dir;
#   fwknopd's digest.cache is not imported (the packet age check still refuses
#   packets older than fwknop_max_age).
# - NAT access requests are refused; GPG stanzas are not supported.";

fn put_note(put: &mut impl FnMut(&str), n: &Note) {
    let text = format!("{} ({}:{}): {}", n.keyword, n.path, n.line, n.text);
    put_wrapped(put, "# - ", "#   ", &text);
}

/// Writes `text` as comment lines of at most 79 columns (longer words stay
/// whole): `first` starts the first line, `rest` the others.
fn put_wrapped(put: &mut impl FnMut(&str), first: &str, rest: &str, text: &str) {
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > 79 {
            put(&line);
            line = rest.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    put(&line);
}

fn put_stanza(put: &mut impl FnMut(&str), st: &FwknopStanza) {
    let source = format_source(&st.source);
    let source: Vec<String> = source.iter().map(|s| toml_str(s)).collect();
    put(&format!("source = [{}]", source.join(", ")));
    if !st.destination.is_empty() {
        let dest: Vec<String> = format_source(&st.destination)
            .iter()
            .map(|s| toml_str(s))
            .collect();
        put(&format!("destination = [{}]", dest.join(", ")));
    }
    let list = |v: &[Service]| {
        v.iter()
            .map(|s| toml_str(&s.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    put(&format!("open_ports = [{}]", list(&st.open_ports)));
    if !st.restrict_ports.is_empty() {
        put(&format!("restrict_ports = [{}]", list(&st.restrict_ports)));
    }
    put("# Secret (KEY / KEY_BASE64), base64 of the passphrase bytes.");
    put(&format!(
        "key_base64 = {}",
        toml_str(&STANDARD.encode(&st.key.0))
    ));
    match &st.hmac_key {
        Some(h) => {
            put("# Secret (HMAC_KEY / HMAC_KEY_BASE64).");
            put(&format!(
                "hmac_key_base64 = {}",
                toml_str(&STANDARD.encode(&h.0))
            ));
        }
        None => put("# No HMAC key: packets are decrypted without being authenticated first."),
    }
    put(&format!(
        "hmac_digest = {}",
        toml_str(st.hmac_digest.name())
    ));
    put(&format!(
        "encryption_mode = {}",
        toml_str(st.encryption_mode.name())
    ));
    put(&format!(
        "access_timeout = {}",
        toml_duration(st.access_timeout)
    ));
    if let Some(m) = st.max_timeout {
        put(&format!("max_timeout = {}", toml_duration(m)));
    }
    if let Some(u) = &st.require_username {
        put(&format!("require_username = {}", toml_str(u)));
    }
    if st.require_source_address {
        put("require_source_address = true");
    }
    if st.enable_cmd_exec {
        put("# ENABLE_CMD_EXEC Y: command messages are allowed for this stanza.");
        put("enable_cmd_exec = true");
    }
    if let Some(user) = &st.cmd_exec_user {
        put(&format!("cmd_exec_user = {}", toml_str(user)));
    }
    if let Some(group) = &st.cmd_exec_group {
        put(&format!("cmd_exec_group = {}", toml_str(group)));
    }
    if let Some(t) = st.access_expire {
        put("# ACCESS_EXPIRE_EPOCH: the stanza stops matching at this Unix time.");
        put(&format!("access_expire = {t}"));
    }
    if let Some(f) = st.force_nat {
        put(&format!("force_nat = {}", toml_str(&f.to_string())));
    }
    if st.force_masquerade {
        put("force_masquerade = true");
    }
    if st.disable_dnat {
        put("disable_dnat = true");
    }
}

/// A TOML string literal for `s`.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A duration as a TOML string Sesame's config reads back exactly.
fn toml_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("\"{}s\"", d.as_secs())
    } else {
        format!("\"{}ms\"", d.as_millis())
    }
}

// ---------------------------------------------------------------------------
// Value parsers, shared with Sesame's TOML loader.

#[cfg(test)]
mod tests {
    use super::fwknopd::parse_pcap_filter;
    use super::values::fwknop_expire_date;
    use super::*;
    use sesame_core::fwknop::{DigestType, EncMode};
    use sesame_testkit::proc::ScratchDir;
    use std::path::PathBuf;

    /// A fresh directory, removed on drop.
    struct Scratch(ScratchDir);

    impl Scratch {
        fn new(tag: &str) -> Self {
            Scratch(ScratchDir::new(&format!("fwconf-{tag}")).unwrap())
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            self.0.write(name, text).unwrap()
        }
    }

    const KEY_B64: &str = "c2VjcmV0LWtleS0xMjM0NQ=="; // "secret-key-12345"
    const HMAC_B64: &str = "aG1hYy1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk="; // "hmac-key-for-tests-0123456789"

    fn access(dir: &Scratch, text: &str) -> Result<FwknopConfig, FwknopConfError> {
        let path = dir.write("access.conf", text);
        load(&path, None)
    }

    fn err_of(dir: &Scratch, text: &str) -> String {
        access(dir, text).expect_err(text).to_string()
    }

    #[test]
    fn every_supported_keyword() {
        let dir = Scratch::new("all");
        let cfg = access(
            &dir,
            &format!(
                "# comment\n\
                 ; also a comment\n\
                 \n\
                 SOURCE: 192.0.2.7, 198.51.100.0/24, 203.0.113.0/255.255.255.128, 2001:db8::/32, 2001:db8:1::5;\n\
                 DESTINATION ANY\n\
                 OPEN_PORTS tcp/22, udp/53 ,TCP/443\n\
                 RESTRICT_PORTS udp/53\n\
                 KEY_BASE64 {KEY_B64}\n\
                 HMAC_KEY_BASE64 {HMAC_B64}\n\
                 HMAC_DIGEST_TYPE sha3_512\n\
                 ENCRYPTION_MODE ctr\n\
                 FW_ACCESS_TIMEOUT 45\n\
                 MAX_FW_TIMEOUT 600\n\
                 REQUIRE_USERNAME alice\n\
                 REQUIRE_SOURCE_ADDRESS Y\n\
                 ENABLE_CMD_EXEC yes\n\
                 ACCESS_EXPIRE_EPOCH 1893456000\n\
                 ENABLE_CMD_SUDO_EXEC N\n\
                 FORCE_MASQUERADE N\n\
                 DISABLE_DNAT N\n\
                 FORWARD_ALL N\n\
                 \n\
                 SOURCE ANY\n\
                 OPEN_PORTS tcp/2222\n\
                 KEY plain passphrase\n\
                 HMAC_KEY hmac-secret\n\
                 REQUIRE_SOURCE N\n"
            ),
        )
        .unwrap();
        let d = &cfg.door;
        assert_eq!((d.port, d.max_age), (DEFAULT_PORT, DEFAULT_MAX_AGE));
        assert_eq!(d.stanzas.len(), 2);
        let a = &d.stanzas[0];
        assert_eq!(a.line, 4);
        assert_eq!(
            format_source(&a.source),
            [
                "192.0.2.7",
                "198.51.100.0/24",
                "203.0.113.0/25",
                "2001:db8::/32",
                "2001:db8:1::5"
            ]
        );
        assert_eq!(
            a.open_ports
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            ["tcp/22", "udp/53", "tcp/443"]
        );
        assert_eq!(a.restrict_ports.len(), 1);
        assert_eq!(a.key.0, b"secret-key-12345");
        assert_eq!(
            a.hmac_key.as_ref().unwrap().0,
            b"hmac-key-for-tests-0123456789"
        );
        assert_eq!(
            (a.hmac_digest.name(), a.encryption_mode.name()),
            ("SHA3_512", "CTR")
        );
        assert_eq!(a.access_timeout, Duration::from_secs(45));
        assert_eq!(a.max_timeout, Some(Duration::from_secs(600)));
        assert_eq!(a.require_username.as_deref(), Some("alice"));
        assert!(a.require_source_address && a.enable_cmd_exec);
        assert_eq!(a.access_expire, Some(1_893_456_000));

        let b = &d.stanzas[1];
        assert!(b.source.is_empty(), "ANY");
        assert_eq!(b.key.0, b"plain passphrase");
        assert_eq!(b.hmac_key.as_ref().unwrap().0, b"hmac-secret");
        assert_eq!(
            (b.hmac_digest.name(), b.encryption_mode.name()),
            ("SHA256", "CBC")
        );
        assert_eq!(b.access_timeout, DEFAULT_ACCESS_TIMEOUT);
        assert_eq!(b.max_timeout, None);
        assert_eq!(b.effective_max_timeout(), DEFAULT_MAX_FW_TIMEOUT);
        assert!(!b.require_source_address && !b.enable_cmd_exec);

        // The door: union of OPEN_PORTS, longest grant, one UDP knock.
        assert_eq!(d.longest_grant(), Duration::from_secs(600));
        let conf = cfg.to_config(Path::new("/etc/fwknop/access.conf")).unwrap();
        assert_eq!(conf.doors.len(), 1);
        let door = &conf.doors[0];
        assert_eq!(door.name, "fwknop");
        assert_eq!(
            door.sequence,
            [Knock {
                port: 62201,
                proto: Proto::Udp
            }]
        );
        assert_eq!(door.services.len(), 4);
        assert_eq!(door.open_for, Duration::from_secs(600));
        assert!(matches!(conf.kinds.get("fwknop"), Some(DoorKind::Fwknop(f)) if f == d));
        assert!(conf.one_time.is_empty());
        // Notes: SOURCE ANY without REQUIRE_SOURCE_ADDRESS; the N no-ops.
        assert!(cfg
            .notes
            .iter()
            .any(|n| n.stanza == Some(1) && n.text.contains("REQUIRE_SOURCE_ADDRESS")));
        assert!(cfg.notes.iter().any(|n| n.keyword == "FORWARD_ALL"));
    }

    #[test]
    fn secrets_are_never_printed() {
        let dir = Scratch::new("redact");
        let cfg = access(
            &dir,
            "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY topsecretpass\nHMAC_KEY hmactopsecret\n",
        )
        .unwrap();
        let dbg = format!("{cfg:?}");
        assert!(
            !dbg.contains("topsecret") && !dbg.contains("hmactopsecret"),
            "{dbg}"
        );
        let msg = err_of(
            &dir,
            "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 not*base64!secret\n",
        );
        assert!(
            msg.contains("access.conf:3: KEY_BASE64: not valid base64"),
            "{msg}"
        );
        assert!(!msg.contains("secret"), "{msg}");
        let msg = err_of(
            &dir,
            "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\nHMAC_KEY_BASE64 %%%hmacsecret\n",
        );
        assert!(
            msg.contains(":4: HMAC_KEY_BASE64: not valid base64"),
            "{msg}"
        );
        assert!(!msg.contains("hmacsecret"), "{msg}");
    }

    #[test]
    fn key_rules() {
        let dir = Scratch::new("keys");
        let s = "SOURCE ANY\nOPEN_PORTS tcp/22\n";
        for (body, line, needle) in [
            ("KEY_BASE64 __CHANGEME__", 3, "placeholder"),
            ("KEY __changeme__", 3, "placeholder"),
            (&format!("KEY {}", "k".repeat(33)) as &str, 3, "at most 32"),
            (
                "KEY_BASE64 QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB",
                3,
                "at most 32",
            ),
            (
                &format!("KEY k\nHMAC_KEY {}", "h".repeat(137)),
                4,
                "at most 136",
            ),
            ("KEY a\nKEY_BASE64 YQ==", 4, "already has KEY"),
            (
                "KEY a\nHMAC_KEY b\nHMAC_KEY_BASE64 YQ",
                5,
                "already has HMAC_KEY",
            ),
            ("HMAC_KEY b", 1, "no KEY or KEY_BASE64"),
            ("KEY a\nHMAC_KEY b\nENCRYPTION_MODE legacy", 5, "legacy"),
            ("KEY a\nENCRYPTION_MODE asymmetric", 4, "GPG"),
            ("KEY a\nENCRYPTION_MODE pcbc", 4, "PCBC"),
            ("KEY a\nHMAC_DIGEST_TYPE sha224", 4, "unknown HMAC digest"),
            ("KEY", 3, "missing value"),
        ] {
            let msg = err_of(&dir, &format!("{s}{body}\n"));
            assert!(
                msg.contains(&format!("access.conf:{line}: ")),
                "{body}: {msg}"
            );
            assert!(msg.contains(needle), "{body}: {msg}");
        }
        // 32 and 136 bytes are fine; base64 without padding too.
        let ok = format!("{s}KEY {}\nHMAC_KEY {}\n", "k".repeat(32), "h".repeat(136));
        access(&dir, &ok).unwrap();
        let cfg = access(&dir, &format!("{s}KEY_BASE64 YWJj\nHMAC_KEY_BASE64 YWI\n")).unwrap();
        assert_eq!(cfg.door.stanzas[0].hmac_key.as_ref().unwrap().0, b"ab");
        // Legacy without HMAC is accepted.
        access(&dir, &format!("{s}KEY a\nENCRYPTION_MODE LEGACY\n")).unwrap();
    }

    #[test]
    fn every_mode_and_digest() {
        let dir = Scratch::new("modes");
        for mode in EncMode::ALL.map(EncMode::name) {
            for digest in DigestType::ALL.map(DigestType::name) {
                let hmac = if mode == "legacy" { "" } else { "HMAC_KEY h\n" };
                let cfg = access(
                    &dir,
                    &format!(
                        "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\n{hmac}ENCRYPTION_MODE {}\nHMAC_DIGEST_TYPE {}\n",
                        mode.to_lowercase(),
                        digest.to_lowercase()
                    ),
                )
                .unwrap();
                let st = &cfg.door.stanzas[0];
                assert_eq!(
                    (st.encryption_mode.name(), st.hmac_digest.name()),
                    (mode, digest)
                );
            }
        }
    }

    #[test]
    fn sources_and_ports() {
        let dir = Scratch::new("src");
        let cfg = access(
            &dir,
            "SOURCE 10.1.2.3/8, any\nOPEN_PORTS tcp/22\nKEY k\n\
             SOURCE 2001:db8::1/64,::1\nOPEN_PORTS udp/51820\nKEY k\n",
        )
        .unwrap();
        assert!(cfg.door.stanzas[0].source.is_empty(), "ANY wins");
        assert_eq!(
            cfg.door.stanzas[1].source,
            [
                ("2001:db8::".parse().unwrap(), 64),
                ("::1".parse().unwrap(), 128)
            ]
        );
        for (body, line, needle) in [
            (
                "SOURCE 10.0.0.1,,10.0.0.2\nOPEN_PORTS tcp/22\nKEY k",
                1,
                "item 2 is empty",
            ),
            ("SOURCE 10.0.0.0/33\nOPEN_PORTS tcp/22\nKEY k", 1, "over 32"),
            (
                "SOURCE 2001:db8::/129\nOPEN_PORTS tcp/22\nKEY k",
                1,
                "over 128",
            ),
            (
                "SOURCE 10.0.0.0/255.0.255.0\nOPEN_PORTS tcp/22\nKEY k",
                1,
                "not contiguous",
            ),
            (
                "SOURCE example.org\nOPEN_PORTS tcp/22\nKEY k",
                1,
                "item 1 \"example.org\"",
            ),
            ("SOURCE ANY\nOPEN_PORTS tcp/22, icmp/0\nKEY k", 2, "item 2"),
            ("SOURCE ANY\nOPEN_PORTS tcp/0\nKEY k", 2, "1 to 65535"),
            ("SOURCE ANY\nOPEN_PORTS 22\nKEY k", 2, "tcp/PORT"),
            ("SOURCE ANY\nOPEN_PORTS udp/62201\nKEY k", 2, "SPA port"),
            ("SOURCE ANY\nKEY k", 1, "no OPEN_PORTS"),
            (
                "SOURCE ANY\nOPEN_PORTS tcp/22\nOPEN_PORTS tcp/23\nKEY k",
                3,
                "already has OPEN_PORTS",
            ),
            (
                "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\nDESTINATION 192.0.2.300",
                4,
                "192.0.2.300",
            ),
            (
                "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\nFW_ACCESS_TIMEOUT 0",
                4,
                "from 1 to",
            ),
            (
                "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\nMAX_FW_TIMEOUT 8388609",
                4,
                "from 1 to",
            ),
            (
                "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\nREQUIRE_SOURCE_ADDRESS maybe",
                4,
                "expected Y or N",
            ),
            (
                "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\nREQUIRE_SOURCE Y\nREQUIRE_SOURCE_ADDRESS Y",
                5,
                "already has REQUIRE_SOURCE",
            ),
        ] {
            let msg = err_of(&dir, &format!("{body}\n"));
            assert!(
                msg.contains(&format!("access.conf:{line}: ")),
                "{body}: {msg}"
            );
            assert!(msg.contains(needle), "{body}: {msg}");
        }
    }

    #[test]
    fn refused_and_unknown_keywords_name_file_and_line() {
        let dir = Scratch::new("refused");
        let head = "# x\nSOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\n";
        for (line, needle) in [
            ("GPG_DECRYPT_ID ABCD1234", "GPG mode is out of scope"),
            ("GPG_DECRYPT_PW hunter2", "GPG mode is out of scope"),
            ("GPG_HOME_DIR /root/.gnupg", "GPG mode is out of scope"),
            ("GPG_REQUIRE_SIG Y", "GPG mode is out of scope"),
            ("GPG_ALLOW_NO_PW Y", "GPG mode is out of scope"),
            ("GPG_REMOTE_ID 1234", "GPG mode is out of scope"),
            ("GPG_FINGERPRINT_ID 1234", "GPG mode is out of scope"),
            ("GPG_IGNORE_SIG_VERIFY_ERROR N", "GPG mode is out of scope"),
            ("GPG_DISABLE_SIG N", "GPG mode is out of scope"),
            ("GPG_EXE /usr/bin/gpg", "GPG mode is out of scope"),
            ("FORCE_NAT 192.168.1.2 22", "needs ENABLE_IPT_FORWARDING Y"),
            ("FORCE_NAT host.example 22", "expected FORCE_NAT IP PORT"),
            ("FORCE_NAT 192.168.1.2", "expected FORCE_NAT IP PORT"),
            ("FORCE_SNAT 192.168.1.1", "SNAT to a chosen address"),
            ("FORCE_MASQUERADE maybe", "Y or N"),
            ("FORWARD_ALL Y", "FORWARD_ALL are not"),
            (
                "CMD_CYCLE_OPEN iptables -A ...",
                "command cycles are not supported",
            ),
            (
                "CMD_CYCLE_CLOSE iptables -D ...",
                "command cycles are not supported",
            ),
            ("CMD_CYCLE_TIMER 30", "command cycles are not supported"),
            ("CMD_EXEC_USER no/body", "expected a user or group name"),
            ("CMD_SUDO_EXEC_USER nobody", "through sudo"),
            ("CMD_SUDO_EXEC_GROUP nogroup", "through sudo"),
            ("ENABLE_CMD_SUDO_EXEC Y", "sudo"),
            ("ACCESS_EXPIRE 13/01/2030", "expected a date MM/DD/YYYY"),
            ("ACCESS_EXPIRE 12/31", "expected a date MM/DD/YYYY"),
            ("BOGUS_KEYWORD 1", "unknown access.conf keyword"),
            ("open_ports tcp/22", "keywords are upper case: OPEN_PORTS"),
        ] {
            let msg = err_of(&dir, &format!("{head}{line}\n"));
            let kw = line.split_whitespace().next().unwrap();
            assert!(
                msg.contains(&format!("access.conf:5: {kw}: ")),
                "{line}: {msg}"
            );
            assert!(msg.contains(needle), "{line}: {msg}");
        }
        assert!(!err_of(&dir, &format!("{head}GPG_DECRYPT_PW hunter2\n")).contains("hunter2"));
        // Keywords before any SOURCE, and files without a stanza.
        let msg = err_of(&dir, "KEY k\nSOURCE ANY\nOPEN_PORTS tcp/22\n");
        assert!(
            msg.contains("access.conf:1: KEY: appears before any SOURCE"),
            "{msg}"
        );
        let msg = err_of(&dir, "# nothing\n");
        assert!(msg.contains("no SOURCE stanza"), "{msg}");
        let msg = load(&dir.0.join("missing.conf"), None)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("missing.conf: cannot read access.conf"),
            "{msg}"
        );
    }

    /// Debian's shipped access.conf (keys filled in) has no OPEN_PORTS: it
    /// runs once Sesame is told what to protect, and such a stanza may open
    /// any protected service, minus its RESTRICT_PORTS.
    #[test]
    fn stanzas_without_open_ports_open_what_sesame_protects() {
        let dir = Scratch::new("noports");
        let debian = dir.write(
            "access.conf",
            "SOURCE              ANY\nKEY_BASE64          wzNP62oPPgEc+kXDPQLHPOayQBuNbYUTPP+QrErNDmg=\nHMAC_KEY_BASE64     Yh+xizBnl6FotC5ec7FanVGClRMlsOAPh2u6eovnerfBVKwaVKzjGoblFMHMc593TNyi0dWn4opLoTIV9q/ttg==\n",
        );
        let msg = load(&debian, None).unwrap_err().to_string();
        assert!(
            msg.contains("access.conf:1: SOURCE: the stanza has no OPEN_PORTS"),
            "{msg}"
        );
        assert!(msg.contains("--protect tcp/22"), "{msg}");
        let ssh: Service = "tcp/22".parse().unwrap();
        let web: Service = "tcp/443".parse().unwrap();
        let cfg = load_protecting(&debian, None, &[ssh, web]).unwrap();
        assert_eq!(cfg.door.stanzas[0].open_ports, vec![ssh, web]);
        assert_eq!(cfg.door.services(), vec![ssh, web]);
        assert!(
            cfg.notes.iter().any(|n| n.text.contains("no OPEN_PORTS")),
            "{:?}",
            cfg.notes
        );
        // Other stanzas' OPEN_PORTS are protected too; RESTRICT_PORTS is
        // taken out.
        let mixed = dir.write(
            "mixed.conf",
            "SOURCE 10.0.0.0/8\nKEY a\nOPEN_PORTS tcp/8443\nSOURCE ANY\nKEY b\nRESTRICT_PORTS tcp/443\n",
        );
        let cfg = load_protecting(&mixed, None, &[web]).unwrap();
        let https_alt: Service = "tcp/8443".parse().unwrap();
        assert_eq!(cfg.door.stanzas[1].open_ports, vec![https_alt]);
        // The door protects what its stanzas can open.
        assert_eq!(
            cfg.to_config(&mixed).unwrap().doors[0].services,
            vec![https_alt]
        );
    }

    #[test]
    fn include_forms_and_loops() {
        let dir = Scratch::new("incl");
        let d = dir.0.path().display();
        dir.write(
            "keys/alice.keys",
            &format!("# keys only\nKEY_BASE64 {KEY_B64}\nHMAC_KEY_BASE64 {HMAC_B64}\n"),
        );
        dir.write(
            "more.conf",
            "SOURCE 192.0.2.0/24\nOPEN_PORTS tcp/443\nKEY k2\n",
        );
        dir.write(
            "access.d/b.conf",
            "SOURCE 2001:db8::/48\nOPEN_PORTS tcp/22\nKEY kb\n",
        );
        dir.write(
            "access.d/a.conf",
            "SOURCE 198.51.100.1\nOPEN_PORTS tcp/22\nKEY ka\n",
        );
        dir.write("access.d/ignored.txt", "not a conf file\n");
        let top = dir.write(
            "access.conf",
            &format!(
                "SOURCE ANY\nOPEN_PORTS tcp/22\n%include_keys {d}/keys/alice.keys\n\
                 %include {d}/more.conf\n\
                 REQUIRE_SOURCE_ADDRESS Y\n\
                 %include_folder {d}/access.d/\n"
            ),
        );
        let cfg = load(&top, None).unwrap();
        let st = &cfg.door.stanzas;
        assert_eq!(st.len(), 4);
        // The first stanza got its keys from %include_keys and, after the
        // %include, REQUIRE_SOURCE_ADDRESS (fwknopd's per-file stanzas).
        assert_eq!(st[0].key.0, b"secret-key-12345");
        assert!(st[0].hmac_key.is_some() && st[0].require_source_address);
        assert_eq!(st[1].key.0, b"k2");
        assert_eq!(st[2].key.0, b"ka", "folder files sorted by name");
        assert_eq!(st[3].key.0, b"kb");
        assert_eq!(cfg.files.len(), 5);
        assert_eq!(cfg.origins[2], (dir.0.join("access.d/").join("a.conf"), 1));
        assert_eq!(cfg.door.services().len(), 2);

        // Relative paths are opened from the current directory, as fwknopd
        // does (not from the including file's directory).
        let rel = dir.write("rel.conf", "%include more.conf\n");
        let msg = load(&rel, None).unwrap_err().to_string();
        assert!(
            msg.contains("rel.conf:1: %include: cannot read more.conf"),
            "{msg}"
        );

        // Included keys and folders are checked like the top file: a key
        // file others can write, or a folder others can add to, is refused.
        use std::os::unix::fs::PermissionsExt;
        let keys = dir.0.join("keys/alice.keys");
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o666)).unwrap();
        let msg = load(&top, None).unwrap_err().to_string();
        assert!(msg.contains("alice.keys is writable by"), "{msg}");
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let folder = dir.0.join("access.d");
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).unwrap();
        let msg = load(&top, None).unwrap_err().to_string();
        assert!(msg.contains("access.d/ is writable by"), "{msg}");
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        if nix::unistd::geteuid().is_root() {
            // Owned by a stranger: its owner could rewrite it.
            nix::unistd::chown(&keys, Some(nix::unistd::Uid::from_raw(54_321)), None).unwrap();
            let msg = load(&top, None).unwrap_err().to_string();
            assert!(msg.contains("owned by uid 54321"), "{msg}");
            nix::unistd::chown(&keys, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        }
        load(&top, None).unwrap();

        // Loops, direct and indirect.
        let a = dir.write("loop/a.conf", &format!("%include {d}/loop/b.conf\n"));
        dir.write(
            "loop/b.conf",
            &format!("SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\n%include {d}/loop/a.conf\n"),
        );
        let msg = load(&a, None).unwrap_err().to_string();
        assert!(msg.contains("b.conf:4: %include: include loop: "), "{msg}");
        let s = dir.write("loop/self.conf", &format!("%include_folder {d}/loop\n"));
        let msg = load(&s, None).unwrap_err().to_string();
        assert!(msg.contains("include loop"), "{msg}");
        // Depth: three files deep at most, as in fwknopd.
        dir.write("deep/3.conf", &format!("%include {d}/deep/4.conf\n"));
        dir.write("deep/2.conf", &format!("%include {d}/deep/3.conf\n"));
        dir.write("deep/4.conf", "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\n");
        let one = dir.write("deep/1.conf", &format!("%include {d}/deep/2.conf\n"));
        let msg = load(&one, None).unwrap_err().to_string();
        assert!(
            msg.contains("3.conf:1: %include: includes nest at most 3"),
            "{msg}"
        );
        let two = dir.write("deep/0.conf", &format!("%include {d}/deep/3.conf\n"));
        assert_eq!(load(&two, None).unwrap().door.stanzas.len(), 1);

        // Errors inside included files name the included file.
        dir.write(
            "bad/x.conf",
            "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\nWHAT 1\n",
        );
        let top = dir.write("bad.conf", &format!("%include_folder {d}/bad\n"));
        let msg = load(&top, None).unwrap_err().to_string();
        assert!(msg.contains("x.conf:4: WHAT: unknown"), "{msg}");
        // %include_keys reads the key lines only, as fwknopd (fwknop's own
        // test includes a whole access.conf), and they replace the
        // stanza's keys; it is allowed only inside a stanza.
        dir.write(
            "whole.conf",
            "SOURCE 10.0.0.0/8\nOPEN_PORTS tcp/80\nKEY included\nFW_ACCESS_TIMEOUT 9\n",
        );
        let top = dir.write(
            "k.conf",
            &format!("SOURCE ANY\nOPEN_PORTS tcp/22\nKEY k\n%include_keys {d}/whole.conf\n"),
        );
        let cfg = load(&top, None).unwrap();
        let stanza = &cfg.door.stanzas[0];
        assert_eq!(stanza.key.0, b"included".to_vec());
        assert_eq!(stanza.open_ports, vec!["tcp/22".parse().unwrap()]);
        assert_eq!(stanza.access_timeout, Duration::from_secs(30));
        assert!(
            cfg.notes.iter().any(|n| n.text.contains(
                "ignored: SOURCE (line 1), OPEN_PORTS (line 2), FW_ACCESS_TIMEOUT (line 4)"
            )),
            "{:?}",
            cfg.notes
        );
        let top = dir.write("k2.conf", &format!("%include_keys {d}/keys/alice.keys\n"));
        let msg = load(&top, None).unwrap_err().to_string();
        assert!(
            msg.contains("k2.conf:1: %include_keys: appears before any SOURCE"),
            "{msg}"
        );
        let top = dir.write("k3.conf", &format!("%include {d}/nope.conf\n"));
        let msg = load(&top, None).unwrap_err().to_string();
        assert!(msg.contains("k3.conf:1: %include: cannot read"), "{msg}");
    }

    fn fwknopd(text: &str) -> Result<FwknopdSettings, FwknopConfError> {
        parse_fwknopd(text, Path::new("fwknopd.conf"))
    }

    #[test]
    fn fwknopd_conf_port_age_interface() {
        let s = fwknopd("").unwrap();
        assert_eq!((s.port, s.max_age), (DEFAULT_PORT, DEFAULT_MAX_AGE));
        assert!(s.interfaces.is_empty());

        let s = fwknopd(
            "#PCAP_INTF eth0;\nPCAP_INTF      wg0;\nPCAP_FILTER    udp port 40001;\n\
             MAX_SPA_PACKET_AGE 60;\nENABLE_SPA_PACKET_AGING Y;\nENABLE_DIGEST_PERSISTENCE N;\n\
             DIGEST_FILE $FWKNOP_RUN_DIR/digest.cache;\nIPT_INPUT_ACCESS ACCEPT, filter, INPUT, 1, FWKNOP_INPUT, 1;\n\
             FIREWALL_EXE /sbin/iptables;\nENABLE_IPT_FORWARDING N;\nUDPSERV_PORT 9;\n",
        )
        .unwrap();
        assert_eq!((s.port, s.max_age), (40001, Duration::from_secs(60)));
        assert_eq!(s.interfaces, ["wg0"]);
        assert!(s.port_origin.contains("line 3"), "{}", s.port_origin);
        let kws: Vec<&str> = s.notes.iter().map(|n| n.keyword.as_str()).collect();
        for k in [
            "ENABLE_DIGEST_PERSISTENCE",
            "DIGEST_FILE",
            "IPT_INPUT_ACCESS",
            "FIREWALL_EXE",
            "UDPSERV_PORT",
        ] {
            assert!(kws.contains(&k), "{k} in {kws:?}");
        }

        let s = fwknopd("PCAP_FILTER UDP DST PORT 7000\nPCAP_INTF any\n").unwrap();
        assert_eq!(s.port, 7000);
        assert!(s.interfaces.is_empty());

        // UDP server mode: UDPSERV_PORT, every interface.
        let s = fwknopd(
            "ENABLE_UDP_SERVER Y;\nUDPSERV_PORT 12345;\nPCAP_INTF eth1;\nPCAP_FILTER tcp port 1;\n",
        )
        .unwrap();
        assert_eq!(s.port, 12345);
        assert!(s.interfaces.is_empty());
        assert!(s.notes.iter().any(|n| n.keyword == "PCAP_FILTER"));
        let s = fwknopd("ENABLE_UDP_SERVER Y\n").unwrap();
        assert_eq!(s.port, DEFAULT_PORT);
        // NFQUEUE mode.
        let s = fwknopd("ENABLE_NFQ_CAPTURE Y\nNFQ_PORT 777\nNFQ_INTERFACE eth2\n").unwrap();
        assert_eq!(
            (s.port, s.interfaces.as_slice()),
            (777, &["eth2".to_string()][..])
        );

        for (text, line, needle) in [
            (
                "PCAP_FILTER udp dst portrange 10000-65535;",
                1,
                "exactly one UDP port",
            ),
            (
                "PCAP_FILTER udp port 62201 and host 192.0.2.1",
                1,
                "exactly one UDP port",
            ),
            (
                "PCAP_INTF an-interface-name-too-long",
                1,
                "1 to 15 characters",
            ),
            ("MAX_SPA_PACKET_AGE 0", 1, "from 1 to 100000"),
            ("MAX_SPA_PACKET_AGE 100001", 1, "from 1 to 100000"),
            (
                "ENABLE_SPA_PACKET_AGING N",
                1,
                "always checks the packet's age",
            ),
            ("ENABLE_IPT_SNAT Y", 1, "SNAT to a chosen address"),
            ("ENABLE_NAT_DNS Y", 1, "must be addresses"),
            ("ENABLE_IPT_FORWARDING maybe", 1, "Y or N"),
            ("ACCESS_FOLDER /etc/fwknop/access.d", 1, "%include_folder"),
            (
                "ENABLE_UDP_SERVER Y\nUDPSERV_PORT 0",
                2,
                "port from 1 to 65535",
            ),
            ("ENABLE_UDP_SERVER Y\nENABLE_NFQ_CAPTURE Y", 2, "one way"),
            (
                "# x\nMAX_SPA_PACKET_AGE 60\nMAX_SPA_PACKET_AGE 90",
                3,
                "already set at line 2",
            ),
            ("\nNOT_A_KEYWORD 1", 2, "unknown fwknopd.conf keyword"),
            ("pcap_intf eth0", 1, "upper case: PCAP_INTF"),
            ("ENABLE_UDP_SERVER maybe", 1, "expected Y or N"),
            ("ENABLE_DESTINATION_RULE Y", 1, "would widen access"),
        ] {
            let msg = fwknopd(text).expect_err(text).to_string();
            assert!(
                msg.starts_with(&format!("fwknopd.conf:{line}: ")),
                "{text}: {msg}"
            );
            assert!(msg.contains(needle), "{text}: {msg}");
        }
    }

    #[test]
    fn fwknopd_conf_feeds_the_door() {
        let dir = Scratch::new("both");
        let acc = dir.write(
            "access.conf",
            "SOURCE ANY\nOPEN_PORTS tcp/22, udp/62201\nKEY k\n",
        );
        let conf = dir.write(
            "fwknopd.conf",
            "PCAP_FILTER udp port 40000;\nPCAP_INTF eth0;\nMAX_SPA_PACKET_AGE 30;\n",
        );
        // udp/62201 is fine once the SPA port is elsewhere.
        let cfg = load(&acc, Some(&conf)).unwrap();
        assert_eq!(
            (cfg.door.port, cfg.door.max_age),
            (40000, Duration::from_secs(30))
        );
        let c = cfg.to_config(&acc).unwrap();
        assert_eq!(c.daemon.interfaces, ["eth0"]);
        assert_eq!(c.doors[0].sequence[0].port, 40000);
        let msg = load(&acc, Some(&dir.0.join("nope.conf")))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("nope.conf: cannot read fwknopd.conf"), "{msg}");
    }

    #[test]
    fn sesame_toml_round_trips_through_the_config_loader() {
        let dir = Scratch::new("toml");
        let acc = dir.write(
            "access.conf",
            &format!(
                "SOURCE 192.0.2.0/24, 2001:db8::/32\nOPEN_PORTS tcp/22, udp/51820\nRESTRICT_PORTS udp/51820\n\
                 KEY_BASE64 {KEY_B64}\nHMAC_KEY_BASE64 {HMAC_B64}\nHMAC_DIGEST_TYPE SHA512\nENCRYPTION_MODE OFB\n\
                 FW_ACCESS_TIMEOUT 60\nMAX_FW_TIMEOUT 900\nREQUIRE_USERNAME bob\nREQUIRE_SOURCE_ADDRESS Y\n\
                 ENABLE_CMD_EXEC Y\nACCESS_EXPIRE_EPOCH 2000000000\n\
                 SOURCE ANY\nOPEN_PORTS tcp/443\nKEY \"quoted\" pass\n"
            ),
        );
        let conf = dir.write("fwknopd.conf", "PCAP_FILTER udp port 40001;\nPCAP_INTF eth0;\nMAX_SPA_PACKET_AGE 90;\nFLUSH_IPT_AT_EXIT Y;\n");
        let cfg = load(&acc, Some(&conf)).unwrap();
        let text = cfg.to_sesame_toml();
        assert!(text.contains("chmod 0600"), "{text}");
        assert!(text.contains("FLUSH_IPT_AT_EXIT"), "{text}");
        let parsed = crate::parse(&text, Path::new("imported.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let Some(DoorKind::Fwknop(back)) = parsed.kinds.get("fwknop") else {
            panic!("no fwknop door in\n{text}");
        };
        let mut expected = cfg.door.clone();
        let mut back = back.clone();
        // Lines point into each file (access.conf vs the TOML).
        for s in expected.stanzas.iter_mut().chain(back.stanzas.iter_mut()) {
            s.line = 0;
        }
        assert_eq!(back, expected);
        let direct = cfg.to_config(&acc).unwrap();
        assert_eq!(parsed.doors, direct.doors);
        assert_eq!(parsed.daemon.interfaces, direct.daemon.interfaces);
    }

    #[test]
    fn pcap_filter_and_dates() {
        assert_eq!(parse_pcap_filter("udp port 62201"), Some(62201));
        assert_eq!(parse_pcap_filter("  udp  dst  port 1 "), Some(1));
        assert_eq!(parse_pcap_filter("udp port 0"), None);
        assert_eq!(parse_pcap_filter("tcp port 22"), None);
        assert_eq!(parse_pcap_filter("udp and dst port 40001"), Some(40001));
        assert_eq!(parse_pcap_filter("dst port 40001 and udp"), Some(40001));
        assert_eq!(parse_pcap_filter("udp port 1 or udp port 2"), None);
        // Local midnights, a day apart (whatever the host's time zone).
        let day = |d: &str| fwknop_expire_date(d).unwrap();
        assert_eq!(day("01/02/2030") - day("01/01/2030"), 86_400);
        assert!(fwknop_expire_date("02/29/2024").is_some());
        assert_eq!(fwknop_expire_date("02/29/2023"), None);
        assert_eq!(fwknop_expire_date("13/01/2030"), None);
        // fwknop's own test suite: "3/10/01" is long past (2001), and
        // "3/10/2500" far ahead.
        assert!(day("3/10/01") < 1_000_000_000 + 100_000_000 && day("3/10/01") > 900_000_000);
        assert!(day("3/10/2500") > 16_000_000_000);
    }
}
