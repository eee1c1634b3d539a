//! access.conf, read as fwknopd reads it: stanzas, includes, keywords.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sesame_core::fwknop::{DigestType, EncMode};
use sesame_core::{Proto, Service};

use super::model::*;
use super::values::*;

/// Keywords that only make sense in a GPG stanza.
const GPG_KEYWORDS: [&str; 10] = [
    "GPG_HOME_DIR",
    "GPG_EXE",
    "GPG_DECRYPT_ID",
    "GPG_DECRYPT_PW",
    "GPG_ALLOW_NO_PW",
    "GPG_REQUIRE_SIG",
    "GPG_DISABLE_SIG",
    "GPG_IGNORE_SIG_VERIFY_ERROR",
    "GPG_REMOTE_ID",
    "GPG_FINGERPRINT_ID",
];

/// Every keyword a stanza may hold (for the "did you mean" hint).
const STANZA_KEYWORDS: [&str; 32] = [
    "SOURCE",
    "DESTINATION",
    "OPEN_PORTS",
    "RESTRICT_PORTS",
    "KEY",
    "KEY_BASE64",
    "HMAC_KEY",
    "HMAC_KEY_BASE64",
    "HMAC_DIGEST_TYPE",
    "ENCRYPTION_MODE",
    "FW_ACCESS_TIMEOUT",
    "MAX_FW_TIMEOUT",
    "REQUIRE_USERNAME",
    "REQUIRE_SOURCE_ADDRESS",
    "REQUIRE_SOURCE",
    "ENABLE_CMD_EXEC",
    "ENABLE_CMD_SUDO_EXEC",
    "CMD_SUDO_EXEC_USER",
    "CMD_SUDO_EXEC_GROUP",
    "CMD_EXEC_USER",
    "CMD_EXEC_GROUP",
    "CMD_CYCLE_OPEN",
    "CMD_CYCLE_CLOSE",
    "CMD_CYCLE_TIMER",
    "ACCESS_EXPIRE",
    "ACCESS_EXPIRE_EPOCH",
    "FORCE_NAT",
    "FORCE_SNAT",
    "FORCE_MASQUERADE",
    "DISABLE_DNAT",
    "FORWARD_ALL",
    "%include_keys",
];

const NAT_REFUSED: &str =
    "not supported: Sesame forwards to one inner service per request (NAT access, FORCE_NAT), \
     keeping the client's address or masquerading (FORCE_MASQUERADE); SNAT to a chosen address \
     and FORWARD_ALL are not (remove the line, or set it to N)";
const GPG_REFUSED: &str = "GPG mode is out of scope for Sesame's fwknop door; use a Rijndael key \
     (KEY or KEY_BASE64, e.g. from `fwknop --key-gen`)";

/// A stanza being read.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) slot: usize,
    pub(super) file: PathBuf,
    pub(super) line: usize,
    pub(super) source: Vec<(IpAddr, u8)>,
    /// Keyword group → (keyword as written, file, line) of its first use.
    pub(super) seen: BTreeMap<&'static str, (String, String, usize)>,
    /// The list and its line (a stanza's lines are all in its file, except
    /// keys read through `%include_keys`).
    pub(super) open_ports: Option<(Vec<Service>, usize)>,
    pub(super) restrict_ports: Vec<Service>,
    pub(super) key: Option<Secret>,
    pub(super) hmac_key: Option<Secret>,
    pub(super) hmac_digest: Option<DigestType>,
    pub(super) encryption_mode: Option<(EncMode, usize)>,
    pub(super) access_timeout: Option<Duration>,
    pub(super) max_timeout: Option<Duration>,
    pub(super) require_username: Option<String>,
    pub(super) require_source_address: bool,
    pub(super) enable_cmd_exec: bool,
    pub(super) cmd_exec_user: Option<String>,
    pub(super) cmd_exec_group: Option<String>,
    pub(super) destination: Vec<(IpAddr, u8)>,
    pub(super) access_expire: Option<u64>,
    pub(super) hmac_digest_line: Option<usize>,
    /// `FORCE_NAT` and its line.
    pub(super) force_nat: Option<(std::net::SocketAddr, usize)>,
    pub(super) force_masquerade: bool,
    pub(super) disable_dnat: bool,
}

pub(super) struct AccessParser {
    /// The SPA port (a stanza must not open it).
    pub(super) port: u16,
    /// fwknopd.conf's `ENABLE_IPT_FORWARDING` (`FORCE_NAT` needs it).
    pub(super) nat_forwarding: bool,
    /// Stanzas in SOURCE order; a slot is filled when its stanza ends.
    pub(super) slots: Vec<Option<(FwknopStanza, PathBuf, usize)>>,
    /// Canonical paths of the files being read (include loop detection).
    pub(super) stack: Vec<PathBuf>,
    pub(super) files: Vec<PathBuf>,
    pub(super) notes: Vec<Note>,
}

impl AccessParser {
    /// Reads one access file, `depth` files deep. `from` is the including
    /// line, if any; `limit` applies fwknopd's `%include` depth limit.
    pub(super) fn file(
        &mut self,
        path: &Path,
        depth: usize,
        from: Option<(&Path, usize, &str)>,
        limit: bool,
    ) -> Result<(), FwknopConfError> {
        let read_err = |e: std::io::Error| match from {
            Some((f, line, kw)) => {
                invalid(f, line, kw, format!("cannot read {}: {e}", path.display()))
            }
            None => sesame_client::located::ReadError::of(path, "access.conf")(e).into(),
        };
        let canonical = std::fs::canonicalize(path).map_err(read_err)?;
        if let Some(at) = self.stack.iter().position(|p| *p == canonical) {
            let (f, line, kw) = from.expect("the top file is never on the stack twice");
            let mut chain: Vec<String> = self.stack[at..]
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            chain.push(canonical.display().to_string());
            return Err(invalid(
                f,
                line,
                kw,
                format!("include loop: {}", chain.join(" -> ")),
            ));
        }
        if limit && depth > MAX_INCLUDE_DEPTH {
            let (f, line, kw) = from.expect("the top file has depth 1");
            return Err(invalid(
                f,
                line,
                kw,
                format!("includes nest at most {MAX_INCLUDE_DEPTH} files deep (as in fwknopd)"),
            ));
        }
        sesame_client::secure_file::check_not_writable_by_others(path)?;
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        self.stack.push(canonical);
        self.files.push(path.to_path_buf());
        let mut current: Option<Pending> = None;
        for l in conf_lines(&text) {
            let kw = l.keyword;
            let need_value = || {
                if l.value.is_empty() {
                    Err(invalid(path, l.number, kw, "missing value"))
                } else {
                    Ok(())
                }
            };
            match kw {
                "%include" => {
                    need_value()?;
                    self.file(
                        Path::new(l.value),
                        depth + 1,
                        Some((path, l.number, kw)),
                        true,
                    )?;
                }
                "%include_folder" => {
                    need_value()?;
                    let dir = Path::new(l.value);
                    // Whoever could add a file there could add a stanza.
                    sesame_client::secure_file::check_not_writable_by_others(dir)?;
                    let unreadable = |e: std::io::Error| {
                        invalid(
                            path,
                            l.number,
                            kw,
                            format!("cannot read folder {}: {e}", dir.display()),
                        )
                    };
                    let entries = std::fs::read_dir(dir).map_err(unreadable)?;
                    let mut names = Vec::new();
                    for entry in entries {
                        let entry = entry.map_err(unreadable)?;
                        let name = entry.file_name();
                        let Some(name) = name.to_str() else { continue };
                        if name.ends_with(".conf") && dir.join(name).is_file() {
                            names.push(name.to_string());
                        }
                    }
                    names.sort();
                    for name in names {
                        self.file(
                            &dir.join(name),
                            depth + 1,
                            Some((path, l.number, kw)),
                            false,
                        )?;
                    }
                }
                "SOURCE" => {
                    need_value()?;
                    if let Some(p) = current.take() {
                        self.finish(p)?;
                    }
                    let source =
                        parse_source(l.value).map_err(|e| invalid(path, l.number, kw, e))?;
                    self.slots.push(None);
                    current = Some(Pending {
                        slot: self.slots.len() - 1,
                        file: path.to_path_buf(),
                        line: l.number,
                        source,
                        ..Pending::default()
                    });
                }
                _ => {
                    let Some(p) = current.as_mut() else {
                        return Err(invalid(
                            path,
                            l.number,
                            kw,
                            if known_keyword(kw) {
                                "appears before any SOURCE line: every stanza starts with SOURCE (fwknopd silently ignored this line)".to_string()
                            } else {
                                unknown_keyword(kw)
                            },
                        ));
                    };
                    if kw == "%include_keys" {
                        need_value()?;
                        self.keys_file(p, Path::new(l.value), path, l.number)?;
                    } else {
                        self.keyword(p, path, l.number, kw, l.value)?;
                    }
                }
            }
        }
        if let Some(p) = current.take() {
            self.finish(p)?;
        }
        self.stack.pop();
        Ok(())
    }

    /// `%include_keys FILE`: only key lines, into the open stanza.
    pub(super) fn keys_file(
        &mut self,
        p: &mut Pending,
        file: &Path,
        from: &Path,
        from_line: usize,
    ) -> Result<(), FwknopConfError> {
        let kw = "%include_keys";
        sesame_client::secure_file::check_not_writable_by_others(file)?;
        let text = std::fs::read_to_string(file).map_err(|e| {
            invalid(
                from,
                from_line,
                kw,
                format!("cannot read {}: {e}", file.display()),
            )
        })?;
        self.files.push(file.to_path_buf());
        // As fwknopd: only the key lines count, and they replace the keys
        // the stanza had; every other line (fwknop's own pattern includes a
        // whole access.conf) is ignored, with a note.
        let mut ignored = Vec::new();
        for l in conf_lines(&text) {
            match l.keyword {
                "KEY" | "KEY_BASE64" | "HMAC_KEY" | "HMAC_KEY_BASE64" => {
                    let group = if l.keyword.starts_with("HMAC") {
                        p.hmac_key = None;
                        "HMAC_KEY"
                    } else {
                        p.key = None;
                        "KEY"
                    };
                    p.seen.remove(group);
                    self.keyword(p, file, l.number, l.keyword, l.value)?
                }
                other if GPG_KEYWORDS.contains(&other) => {
                    return Err(invalid(file, l.number, other, GPG_REFUSED))
                }
                other => ignored.push(format!("{other} (line {})", l.number)),
            }
        }
        if !ignored.is_empty() {
            self.notes.push(Note {
                path: from.display().to_string(),
                line: from_line,
                keyword: kw.to_string(),
                stanza: Some(p.slot),
                text: format!(
                    "only KEY, KEY_BASE64, HMAC_KEY and HMAC_KEY_BASE64 are read from {}, as fwknopd does; ignored: {}",
                    file.display(),
                    ignored.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// Records the first use of a keyword group in the stanza; a second use
    /// is an error.
    pub(super) fn once(
        p: &mut Pending,
        group: &'static str,
        path: &Path,
        line: usize,
        kw: &str,
    ) -> Result<(), FwknopConfError> {
        if let Some((first_kw, first_file, first_line)) = p.seen.get(group) {
            return Err(invalid(
                path,
                line,
                kw,
                format!(
                    "the stanza already has {first_kw} ({first_file}:{first_line}); give it once per stanza (fwknopd kept the last one)"
                ),
            ));
        }
        p.seen
            .insert(group, (kw.to_string(), path.display().to_string(), line));
        Ok(())
    }

    /// One keyword line of the open stanza.
    pub(super) fn keyword(
        &mut self,
        p: &mut Pending,
        path: &Path,
        line: usize,
        kw: &str,
        value: &str,
    ) -> Result<(), FwknopConfError> {
        let err = |m: String| invalid(path, line, kw, m);
        if value.is_empty() {
            return Err(err("missing value".into()));
        }
        let slot = p.slot;
        let note = |this: &mut Self, text: &str| {
            this.notes.push(Note {
                path: path.display().to_string(),
                line,
                keyword: kw.to_string(),
                stanza: Some(slot),
                text: text.to_string(),
            })
        };
        match kw {
            "DESTINATION" => {
                Self::once(p, "DESTINATION", path, line, kw)?;
                // Same syntax as SOURCE; matched against the SPA packet's
                // destination address, as fwknopd does.
                p.destination = parse_source(value).map_err(err)?;
            }
            "OPEN_PORTS" => {
                Self::once(p, "OPEN_PORTS", path, line, kw)?;
                let list = parse_port_list(value).map_err(err)?;
                if let Some(s) = list
                    .iter()
                    .find(|s| s.proto == Proto::Udp && s.port == self.port)
                {
                    return Err(invalid(
                        path,
                        line,
                        kw,
                        format!("{s} is the SPA port: packets to it are observed and dropped, so it could never be reached"),
                    ));
                }
                p.open_ports = Some((list, line));
            }
            "RESTRICT_PORTS" => {
                Self::once(p, "RESTRICT_PORTS", path, line, kw)?;
                p.restrict_ports = parse_port_list(value).map_err(err)?;
            }
            "KEY" | "KEY_BASE64" | "HMAC_KEY" | "HMAC_KEY_BASE64" => {
                let hmac = kw.starts_with("HMAC");
                Self::once(p, if hmac { "HMAC_KEY" } else { "KEY" }, path, line, kw)?;
                if value.eq_ignore_ascii_case(CHANGEME) {
                    return Err(err(format!(
                        "still the placeholder {CHANGEME}: generate keys with `fwknop --key-gen`"
                    )));
                }
                let bytes = if kw.ends_with("_BASE64") {
                    decode_key_base64(value).map_err(err)?
                } else {
                    value.as_bytes().to_vec()
                };
                let max = if hmac { MAX_HMAC_KEY_LEN } else { MAX_KEY_LEN };
                if bytes.len() > max {
                    return Err(err(format!(
                        "the key is {} bytes; fwknop allows at most {max}",
                        bytes.len()
                    )));
                }
                if hmac {
                    p.hmac_key = Some(Secret(bytes));
                } else {
                    p.key = Some(Secret(bytes));
                }
            }
            "HMAC_DIGEST_TYPE" => {
                Self::once(p, "HMAC_DIGEST_TYPE", path, line, kw)?;
                p.hmac_digest = Some(parse_hmac_digest(value).map_err(err)?);
                p.hmac_digest_line = Some(line);
            }
            "ENCRYPTION_MODE" => {
                Self::once(p, "ENCRYPTION_MODE", path, line, kw)?;
                let mode = parse_encryption_mode(value).map_err(err)?;
                p.encryption_mode = Some((mode, line));
            }
            "FW_ACCESS_TIMEOUT" => {
                Self::once(p, "FW_ACCESS_TIMEOUT", path, line, kw)?;
                p.access_timeout = Some(seconds(value, MAX_TIMEOUT_SECS).map_err(err)?);
            }
            "MAX_FW_TIMEOUT" => {
                Self::once(p, "MAX_FW_TIMEOUT", path, line, kw)?;
                p.max_timeout = Some(seconds(value, MAX_TIMEOUT_SECS).map_err(err)?);
            }
            "REQUIRE_USERNAME" => {
                Self::once(p, "REQUIRE_USERNAME", path, line, kw)?;
                check_username(value).map_err(err)?;
                p.require_username = Some(value.to_string());
            }
            "REQUIRE_SOURCE_ADDRESS" | "REQUIRE_SOURCE" => {
                Self::once(p, "REQUIRE_SOURCE_ADDRESS", path, line, kw)?;
                p.require_source_address = yes_no(value).map_err(err)?;
            }
            "ENABLE_CMD_EXEC" => {
                Self::once(p, "ENABLE_CMD_EXEC", path, line, kw)?;
                p.enable_cmd_exec = yes_no(value).map_err(err)?;
            }
            "ACCESS_EXPIRE_EPOCH" => {
                Self::once(p, "ACCESS_EXPIRE", path, line, kw)?;
                let t = value
                    .parse::<u64>()
                    .map_err(|_| err(format!("expected Unix seconds, found {value:?}")))?;
                p.access_expire = Some(t);
            }
            "ACCESS_EXPIRE" => {
                Self::once(p, "ACCESS_EXPIRE", path, line, kw)?;
                let t = fwknop_expire_date(value)
                    .ok_or_else(|| err(format!("expected a date MM/DD/YYYY, found {value:?}")))?;
                // Before 1970 (fwknop's "3/10/01" reads as 2001; a year
                // under 1900 as years since 1900): expired from the start.
                p.access_expire = Some(u64::try_from(t).unwrap_or(0));
            }
            "ENABLE_CMD_SUDO_EXEC" => {
                if yes_no(value).map_err(err)? {
                    return Err(err(
                        "running commands through sudo is not supported by Sesame".into(),
                    ));
                }
                note(self, "N: no effect.");
            }
            "CMD_EXEC_USER" | "CMD_EXEC_GROUP" => {
                Self::once(
                    p,
                    if kw == "CMD_EXEC_USER" {
                        "CMD_EXEC_USER"
                    } else {
                        "CMD_EXEC_GROUP"
                    },
                    path,
                    line,
                    kw,
                )?;
                if !crate::model::valid_user_name(value) {
                    return Err(err(format!(
                        "expected a user or group name, found {value:?}"
                    )));
                }
                if kw == "CMD_EXEC_USER" {
                    p.cmd_exec_user = Some(value.to_string());
                } else {
                    p.cmd_exec_group = Some(value.to_string());
                }
            }
            "CMD_SUDO_EXEC_USER" | "CMD_SUDO_EXEC_GROUP" => {
                return Err(err(
                    "running commands through sudo is not supported by Sesame (use CMD_EXEC_USER: sesamed runs the command as that user itself)".into(),
                ));
            }
            "CMD_CYCLE_OPEN" | "CMD_CYCLE_CLOSE" | "CMD_CYCLE_TIMER" => {
                return Err(err(
                    "command cycles are not supported: Sesame opens OPEN_PORTS itself with nftables grant sets (for extra actions, use on_open/on_close in a Sesame door)".into(),
                ));
            }
            "FORCE_NAT" => {
                // `FORCE_NAT IP PORT`: an address, never a name.
                let mut parts = value.split_whitespace();
                let forced = match (parts.next(), parts.next(), parts.next()) {
                    (Some(ip), Some(port), None) => ip
                        .parse::<std::net::IpAddr>()
                        .ok()
                        .zip(port.parse::<u16>().ok().filter(|&p| p != 0))
                        .map(|(ip, port)| std::net::SocketAddr::new(ip, port)),
                    _ => None,
                };
                let Some(forced) = forced else {
                    return Err(err(format!(
                        "{value:?}: expected FORCE_NAT IP PORT (an address and a port from 1 to 65535)"
                    )));
                };
                p.force_nat = Some((forced, line));
            }
            "FORCE_MASQUERADE" => p.force_masquerade = yes_no(value).map_err(err)?,
            "DISABLE_DNAT" => p.disable_dnat = yes_no(value).map_err(err)?,
            "FORCE_SNAT" => return Err(err(NAT_REFUSED.into())),
            "FORWARD_ALL" => {
                if yes_no(value).map_err(err)? {
                    return Err(err(NAT_REFUSED.into()));
                }
                note(self, "N: no effect.");
            }
            k if GPG_KEYWORDS.contains(&k) => return Err(err(GPG_REFUSED.into())),
            "SOURCE" | "%include" | "%include_folder" | "%include_keys" => {
                unreachable!("handled by the caller")
            }
            k => return Err(err(unknown_keyword(k))),
        }
        Ok(())
    }

    /// Ends a stanza: checks it and fills its slot.
    pub(super) fn finish(&mut self, p: Pending) -> Result<(), FwknopConfError> {
        let Some(key) = p.key else {
            return Err(invalid(
                &p.file,
                p.line,
                "SOURCE",
                "the stanza has no KEY or KEY_BASE64 (Sesame's fwknop door takes Rijndael keys; GPG is out of scope)",
            ));
        };
        if let Some((_, line)) = p.force_nat.filter(|_| !self.nat_forwarding) {
            return Err(invalid(
                &p.file,
                line,
                "FORCE_NAT",
                "FORCE_NAT needs ENABLE_IPT_FORWARDING Y in fwknopd.conf (as in fwknopd)",
            ));
        }
        // No OPEN_PORTS: filled in once the whole file is read (see
        // `load_protecting`).
        let (open_ports, open_line) = p.open_ports.unwrap_or((Vec::new(), p.line));
        let (mode, mode_line) = p.encryption_mode.unwrap_or((EncMode::Cbc, p.line));
        let stanza = FwknopStanza {
            line: p.line,
            source: p.source,
            open_ports,
            restrict_ports: p.restrict_ports,
            key,
            hmac_key: p.hmac_key,
            hmac_digest: p.hmac_digest.unwrap_or(DigestType::Sha256),
            encryption_mode: mode,
            access_timeout: p.access_timeout.unwrap_or(DEFAULT_ACCESS_TIMEOUT),
            max_timeout: p.max_timeout,
            require_username: p.require_username,
            require_source_address: p.require_source_address,
            enable_cmd_exec: p.enable_cmd_exec,
            cmd_exec_user: p.cmd_exec_user.clone(),
            cmd_exec_group: p.cmd_exec_group.clone(),
            destination: p.destination.clone(),
            access_expire: p.access_expire,
            force_nat: p.force_nat.map(|(f, _)| f),
            disable_dnat: p.disable_dnat,
            force_masquerade: p.force_masquerade,
        };
        if let Err(e) = check_stanza(&stanza) {
            // Point at the most specific line known.
            let (line, kw) = if e.starts_with("legacy") {
                (mode_line, "ENCRYPTION_MODE")
            } else {
                (p.line, "SOURCE")
            };
            return Err(invalid(&p.file, line, kw, e));
        }
        let here = p.file.display().to_string();
        let mut note = |kw: &str, line: usize, text: &str| {
            self.notes.push(Note {
                path: here.clone(),
                line,
                keyword: kw.to_string(),
                stanza: Some(p.slot),
                text: text.to_string(),
            })
        };
        if stanza.hmac_key.is_none() {
            note(
                "SOURCE",
                p.line,
                "no HMAC_KEY: packets are decrypted without being authenticated first (fwknop recommends an HMAC key).",
            );
            if let Some(line) = p.hmac_digest_line {
                note("HMAC_DIGEST_TYPE", line, "no effect without an HMAC key.");
            }
        }
        if stanza.source.is_empty() && !stanza.require_source_address {
            note(
                "SOURCE",
                p.line,
                "SOURCE ANY without REQUIRE_SOURCE_ADDRESS Y: packets may carry 0.0.0.0 (fwknop -s: open for whatever address the packet comes from), as fwknopd allowed (and warned about).",
            );
        }
        if !stanza.open_ports.is_empty()
            && stanza
                .open_ports
                .iter()
                .all(|s| stanza.restrict_ports.contains(s))
        {
            note(
                "OPEN_PORTS",
                open_line,
                "every OPEN_PORTS entry is also in RESTRICT_PORTS: this stanza can open nothing.",
            );
        }
        self.slots[p.slot] = Some((stanza, p.file, p.line));
        Ok(())
    }
}

fn known_keyword(kw: &str) -> bool {
    STANZA_KEYWORDS.contains(&kw) || GPG_KEYWORDS.contains(&kw)
}

fn unknown_keyword(kw: &str) -> String {
    let upper = kw.to_ascii_uppercase();
    if upper != kw && known_keyword(&upper) {
        format!("unknown keyword (keywords are upper case: {upper})")
    } else {
        "unknown access.conf keyword".to_string()
    }
}

// ---------------------------------------------------------------------------
// fwknopd.conf
