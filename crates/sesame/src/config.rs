//! The daemon's configuration file: strict TOML, validated into core doors.
//!
//! Unknown keys are errors, and every error names the file, the line and the
//! offending item, so that `sesamed --check-config` and a reload can say
//! exactly what is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use std::net::IpAddr;

use sesame_core::door::{CommandTemplate, Commands};
use sesame_core::{Door, DoorError, Knock, Proto, Service, TcpFlags};
use toml::Spanned;

/// NFLOG group used when the config does not name one.
pub const DEFAULT_NFLOG_GROUP: u16 = 2700;
/// Default bound on in-progress knocks (per source and door).
pub const DEFAULT_MAX_TRACKED: usize = 100_000;
/// Default bound on simultaneously open grants.
pub const DEFAULT_MAX_GRANTS: usize = 100_000;
/// Default knock window, counted from the first knock.
pub const DEFAULT_SEQ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default grant lifetime.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(30);
/// Default location of the daemon config.
pub const DEFAULT_PATH: &str = "/etc/sesame/sesame.toml";

/// A validated daemon configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// Daemon-wide settings.
    pub daemon: DaemonSettings,
    /// Doors, sorted by name.
    pub doors: Vec<Door>,
    /// Doors whose sequence comes from a knockd-style one-time sequences
    /// file: door name → file. The door's `sequence` is the first unused one.
    pub one_time: BTreeMap<String, PathBuf>,
}

/// Daemon-wide settings from the `[daemon]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSettings {
    /// nftables table name (family `inet`).
    pub table: String,
    /// NFLOG group the knock rules log to.
    pub nflog_group: u16,
    /// Bound on in-progress knocks.
    pub max_tracked: usize,
    /// Bound on simultaneously open grants.
    pub max_grants: usize,
    /// Only knocks arriving on these interfaces count (empty: every
    /// interface). Matched by name, so interfaces may come and go.
    pub interfaces: Vec<String>,
    /// Also append log lines to this file.
    pub log_file: Option<PathBuf>,
    /// Also send log lines to syslog (`/dev/log`).
    pub syslog: bool,
    /// Write the daemon's pid here while it runs.
    pub pid_file: Option<PathBuf>,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            table: sesame_nftables::DEFAULT_TABLE.to_string(),
            nflog_group: DEFAULT_NFLOG_GROUP,
            max_tracked: DEFAULT_MAX_TRACKED,
            max_grants: DEFAULT_MAX_GRANTS,
            interfaces: Vec::new(),
            log_file: None,
            syslog: false,
            pid_file: None,
        }
    }
}

/// Longest interface name Linux allows (`IFNAMSIZ` - 1).
pub const MAX_IFNAME: usize = 15;

/// Checks an interface name: 1 to 15 printable bytes without '/' or ':'.
/// Names are matched exactly, as in knockd.
pub fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':')
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Read {
        /// File that failed.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// TOML syntax, unknown key or wrong type.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{path}:{line}:{column}: {item}: {message}")]
    Invalid {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The offending item, e.g. `door "ssh" sequence[1] "70x0"`.
        item: String,
        /// What is wrong with it.
        message: String,
    },
    /// The file defines no door.
    #[error(
        "{path}: no door defined; add at least one [door.NAME] table (see examples/sesame.toml)"
    )]
    NoDoors {
        /// File.
        path: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    door: BTreeMap<String, Spanned<RawDoor>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    table: Option<Spanned<String>>,
    nflog_group: Option<Spanned<i64>>,
    max_tracked: Option<Spanned<i64>>,
    max_grants: Option<Spanned<i64>>,
    #[serde(default)]
    interfaces: Vec<Spanned<String>>,
    log_file: Option<String>,
    #[serde(default)]
    syslog: bool,
    pid_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoor {
    /// `"7000,8000:udp"` or `["7000", "8000:udp"]` (or bare integers).
    sequence: Option<Spanned<toml::Value>>,
    /// knockd-style one-time sequences file (instead of `sequence`).
    one_time_sequences: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    seq_timeout: Option<Spanned<RawDuration>>,
    open_for: Option<Spanned<RawDuration>>,
    tcp_flags: Option<Spanned<String>>,
    #[serde(default)]
    protect: Vec<Spanned<String>>,
    on_open: Option<Spanned<Vec<String>>>,
    on_close: Option<Spanned<Vec<String>>>,
    on_open_v6: Option<Spanned<Vec<String>>>,
    on_close_v6: Option<Spanned<Vec<String>>>,
    on_open_shell: Option<Spanned<String>>,
    on_close_shell: Option<Spanned<String>>,
    on_open_shell_v6: Option<Spanned<String>>,
    on_close_shell_v6: Option<Spanned<String>>,
}

/// Integer seconds or a human duration such as `"30s"`, `"5m"`, `"500ms"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(i64),
    Text(String),
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, path)
}

/// Validates config text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let ctx = Ctx {
        text,
        path: path.display().to_string(),
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (line, column) = ctx.position(e.span().unwrap_or(0..0));
        ConfigError::Syntax {
            path: ctx.path.clone(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;
    let daemon = ctx.daemon(raw.daemon)?;
    if raw.door.is_empty() {
        return Err(ConfigError::NoDoors { path: ctx.path });
    }
    let mut doors = Vec::with_capacity(raw.door.len());
    let mut one_time = BTreeMap::new();
    for (name, door) in raw.door {
        let (door, file) = ctx.door(name, door)?;
        if let Some(file) = file {
            one_time.insert(door.name.clone(), file);
        }
        doors.push(door);
    }
    ctx.check_cross_door(&doors)?;
    Ok(Config {
        path: path.to_path_buf(),
        daemon,
        doors,
        one_time,
    })
}

struct Ctx<'a> {
    text: &'a str,
    path: String,
}

impl Ctx<'_> {
    fn position(&self, span: Range<usize>) -> (usize, usize) {
        let offset = span.start.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    fn invalid(&self, span: Range<usize>, item: String, message: impl ToString) -> ConfigError {
        let (line, column) = self.position(span);
        ConfigError::Invalid {
            path: self.path.clone(),
            line,
            column,
            item,
            message: message.to_string(),
        }
    }

    /// Span of `item` inside the value at `within`, so errors point at the
    /// element itself; falls back to the whole value.
    fn item_span(&self, within: &Range<usize>, item: &str) -> Range<usize> {
        let value = self.text.get(within.clone()).unwrap_or_default();
        match (item.is_empty(), value.find(item)) {
            (false, Some(at)) => within.start + at..within.start + at + item.len(),
            _ => within.clone(),
        }
    }

    fn daemon(&self, raw: RawDaemon) -> Result<DaemonSettings, ConfigError> {
        let mut out = DaemonSettings::default();
        if let Some(table) = raw.table {
            let ok = !table.get_ref().is_empty()
                && table.get_ref().len() <= 64
                && table
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(self.invalid(
                    table.span(),
                    format!("daemon.table {:?}", table.get_ref()),
                    "use 1 to 64 letters, digits, '_' or '-'",
                ));
            }
            out.table = table.into_inner();
        }
        if let Some(group) = raw.nflog_group {
            out.nflog_group = u16::try_from(*group.get_ref()).map_err(|_| {
                self.invalid(
                    group.span(),
                    format!("daemon.nflog_group {}", group.get_ref()),
                    "expected an NFLOG group number from 0 to 65535",
                )
            })?;
        }
        for name in raw.interfaces {
            if !valid_interface_name(name.get_ref()) {
                return Err(self.invalid(
                    name.span(),
                    format!("daemon.interfaces {:?}", name.get_ref()),
                    "expected an interface name of 1 to 15 characters",
                ));
            }
            if !out.interfaces.contains(name.get_ref()) {
                out.interfaces.push(name.into_inner());
            }
        }
        out.log_file = raw.log_file.map(PathBuf::from);
        out.pid_file = raw.pid_file.map(PathBuf::from);
        out.syslog = raw.syslog;
        for (key, field, target) in [
            ("max_tracked", raw.max_tracked, &mut out.max_tracked),
            ("max_grants", raw.max_grants, &mut out.max_grants),
        ] {
            if let Some(v) = field {
                *target = usize::try_from(*v.get_ref())
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        self.invalid(
                            v.span(),
                            format!("daemon.{key} {}", v.get_ref()),
                            "expected a positive integer",
                        )
                    })?;
            }
        }
        Ok(out)
    }

    fn door(
        &self,
        name: String,
        raw: Spanned<RawDoor>,
    ) -> Result<(Door, Option<PathBuf>), ConfigError> {
        let door_span = raw.span();
        let raw = raw.into_inner();
        let label = format!("door {name:?}");

        let (seq_span, items, one_time) = match (raw.sequence, raw.one_time_sequences) {
            (Some(_), Some(file)) => {
                return Err(self.invalid(
                    file.span(),
                    format!("{label} one_time_sequences"),
                    "give either sequence or one_time_sequences, not both",
                ))
            }
            (None, None) => {
                return Err(self.invalid(
                    door_span,
                    label,
                    "missing sequence (or one_time_sequences)",
                ))
            }
            (None, Some(file)) => {
                let path = PathBuf::from(file.get_ref());
                let otf = crate::one_time::OneTimeFile::open(&path).map_err(|e| {
                    self.invalid(file.span(), format!("{label} one_time_sequences"), e)
                })?;
                let Some(current) = otf.current() else {
                    return Err(self.invalid(
                        file.span(),
                        format!("{label} one_time_sequences {:?}", file.get_ref()),
                        "no unused sequence left in the file",
                    ));
                };
                let items = current.iter().map(|k| k.to_string()).collect();
                (file.span(), items, Some(path))
            }
            (Some(sequence), None) => {
                let seq_span = sequence.span();
                let items: Vec<String> = match sequence.into_inner() {
                    toml::Value::String(text) => {
                        text.split(',').map(|s| s.trim().to_string()).collect()
                    }
                    toml::Value::Array(values) => values
                        .into_iter()
                        .map(|v| match v {
                            toml::Value::String(s) => s,
                            toml::Value::Integer(i) => i.to_string(),
                            other => other.to_string(),
                        })
                        .collect(),
                    other => {
                        return Err(self.invalid(
                            seq_span,
                            format!("{label} sequence"),
                            format!(
                                "expected a list such as [\"7000\", \"8000:udp\"] or a string \"7000,8000:udp\", found {}",
                                other.type_str()
                            ),
                        ))
                    }
                };
                (seq_span, items, None)
            }
        };
        let mut sequence = Vec::with_capacity(items.len());
        for (i, text) in items.iter().enumerate() {
            let knock: Knock = text.parse().map_err(|e: DoorError| {
                self.invalid(
                    self.item_span(&seq_span, text),
                    format!("{label} sequence[{i}] {text:?}"),
                    e,
                )
            })?;
            sequence.push(knock);
        }

        let duration = |key: &str,
                        raw: Option<Spanned<RawDuration>>,
                        default: Duration|
         -> Result<Duration, ConfigError> {
            let Some(raw) = raw else { return Ok(default) };
            let span = raw.span();
            match raw.into_inner() {
                RawDuration::Seconds(s) if s > 0 => Ok(Duration::from_secs(s as u64)),
                RawDuration::Seconds(s) => Err(self.invalid(
                    span,
                    format!("{label} {key} {s}"),
                    "must be a positive number of seconds",
                )),
                RawDuration::Text(t) => match humantime::parse_duration(&t) {
                    Ok(d) if !d.is_zero() => Ok(d),
                    Ok(_) => Err(self.invalid(
                        span,
                        format!("{label} {key} {t:?}"),
                        "must be longer than zero",
                    )),
                    Err(e) => Err(self.invalid(
                        span,
                        format!("{label} {key} {t:?}"),
                        format!("{e} (examples: 30, \"30s\", \"5m\", \"1h 30m\")"),
                    )),
                },
            }
        };
        let seq_timeout = duration("seq_timeout", raw.seq_timeout, DEFAULT_SEQ_TIMEOUT)?;
        let open_for = duration("open_for", raw.open_for, DEFAULT_OPEN_FOR)?;

        let tcp_flags = match raw.tcp_flags {
            None => TcpFlags::default(),
            Some(f) => f.get_ref().parse().map_err(|e: DoorError| {
                self.invalid(f.span(), format!("{label} tcp_flags {:?}", f.get_ref()), e)
            })?,
        };

        let mut services = Vec::with_capacity(raw.protect.len());
        for (i, s) in raw.protect.iter().enumerate() {
            let service: Service = s.get_ref().parse().map_err(|e: DoorError| {
                self.invalid(
                    s.span(),
                    format!("{label} protect[{i}] {:?}", s.get_ref()),
                    e,
                )
            })?;
            if !services.contains(&service) {
                services.push(service);
            }
        }

        let mut cmd_spans: Vec<(Range<usize>, String)> = Vec::new();
        let on_open = self.commands(
            &label,
            "on_open",
            [raw.on_open, raw.on_open_v6],
            [raw.on_open_shell, raw.on_open_shell_v6],
            &mut cmd_spans,
        )?;
        let on_close = self.commands(
            &label,
            "on_close",
            [raw.on_close, raw.on_close_v6],
            [raw.on_close_shell, raw.on_close_shell_v6],
            &mut cmd_spans,
        )?;
        let target = match raw.target {
            None => None,
            Some(t) => Some(t.get_ref().parse::<IpAddr>().map_err(|_| {
                self.invalid(
                    t.span(),
                    format!("{label} target {:?}", t.get_ref()),
                    "expected an IPv4 or IPv6 address",
                )
            })?),
        };

        let door = Door {
            name: name.clone(),
            sequence,
            seq_timeout,
            open_for,
            tcp_flags,
            services,
            target,
            on_open,
            on_close,
        };
        door.validate().map_err(|e| {
            // Point at the most specific place we know for the failing check.
            let span = match &e {
                DoorError::EmptySequence | DoorError::SequenceTooLong(_) => seq_span.clone(),
                DoorError::EmptyCommand(key) | DoorError::ServicePlaceholderWithoutService(key) => {
                    cmd_spans
                        .iter()
                        .find(|(_, k)| k == key)
                        .map_or(door_span.clone(), |(s, _)| s.clone())
                }
                _ => door_span.clone(),
            };
            self.invalid(span, label.clone(), e)
        })?;
        Ok((door, one_time))
    }

    /// Builds one event's commands from its argv keys (`on_open`,
    /// `on_open_v6`) or shell keys (`on_open_shell`, `on_open_shell_v6`). The
    /// plain key sets both families; the `_v6` key overrides IPv6, and an
    /// empty `_v6` value disables it (knockd's `Start_Command_6`).
    fn commands(
        &self,
        label: &str,
        key: &str,
        argv: [Option<Spanned<Vec<String>>>; 2],
        shell: [Option<Spanned<String>>; 2],
        spans: &mut Vec<(Range<usize>, String)>,
    ) -> Result<Commands, ConfigError> {
        let [argv_both, argv_v6] = argv;
        let [shell_both, shell_v6] = shell;
        if argv_both.is_some() || argv_v6.is_some() {
            if let Some(s) = shell_both.as_ref().or(shell_v6.as_ref()) {
                return Err(self.invalid(
                    s.span(),
                    format!("{label} {key}_shell"),
                    format!("give either {key} (argv) or {key}_shell (a /bin/sh command line), not both"),
                ));
            }
        }
        let from_argv = |c: Spanned<Vec<String>>| (c.span(), CommandTemplate::argv(c.into_inner()));
        let from_shell = |c: Spanned<String>| (c.span(), CommandTemplate::shell(c.get_ref()));
        let both = argv_both.map(from_argv).or(shell_both.map(from_shell));
        let v6 = argv_v6.map(from_argv).or(shell_v6.map(from_shell));
        if let Some((span, _)) = &both {
            spans.push((span.clone(), key.to_string()));
        }
        let mut out = Commands::both(both.map(|(_, c)| c));
        if let Some((span, cmd)) = v6 {
            let empty =
                cmd.argv.is_empty() || cmd.shell_script().is_some_and(|s| s.trim().is_empty());
            if empty {
                out.v6 = None;
            } else {
                spans.push((span, key.to_string()));
                out.v6 = Some(cmd);
            }
        }
        Ok(out)
    }

    /// Checks that need every door at once.
    fn check_cross_door(&self, doors: &[Door]) -> Result<(), ConfigError> {
        // Knock packets are dropped, so a knock port that is also a protected
        // service would make the service unreachable even when granted.
        let protected: BTreeSet<(Proto, u16)> = doors
            .iter()
            .flat_map(|d| d.services.iter().map(|s| (s.proto, s.port)))
            .collect();
        for door in doors {
            for knock in &door.sequence {
                if protected.contains(&(knock.proto, knock.port)) {
                    let needle = format!("[door.{}]", door.name);
                    let at = self.text.find(&needle).unwrap_or(0);
                    return Err(self.invalid(
                        at..at,
                        format!("door {:?} sequence {}", door.name, knock),
                        format!(
                            "{}/{} is also a protected service; knock packets are dropped, so it could never be reached",
                            knock.proto, knock.port
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("test.toml"))
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../../../examples/sesame.toml");
        let cfg = parse_str(text).expect("examples/sesame.toml must be valid");
        assert!(!cfg.doors.is_empty());
    }

    #[test]
    fn full_door_parses_with_defaults() {
        let cfg = parse_str(
            r#"
            [door.ssh]
            sequence = ["7000", "8000:udp", 9000]
            protect = ["tcp/22"]
            "#,
        )
        .unwrap();
        let door = &cfg.doors[0];
        assert_eq!(door.name, "ssh");
        assert_eq!(door.sequence.len(), 3);
        assert_eq!(door.sequence[1].proto, Proto::Udp);
        assert_eq!(door.seq_timeout, DEFAULT_SEQ_TIMEOUT);
        assert_eq!(door.open_for, DEFAULT_OPEN_FOR);
        assert_eq!(cfg.daemon.nflog_group, DEFAULT_NFLOG_GROUP);
        assert_eq!(cfg.daemon.max_tracked, DEFAULT_MAX_TRACKED);
    }

    #[test]
    fn comma_string_sequence_and_durations() {
        let cfg = parse_str(
            r#"
            [door.web]
            sequence = "1000, 2000:udp"
            seq_timeout = "1500ms"
            open_for = 45
            protect = ["tcp/443", "udp/443"]
            "#,
        )
        .unwrap();
        let door = &cfg.doors[0];
        assert_eq!(door.sequence.len(), 2);
        assert_eq!(door.seq_timeout, Duration::from_millis(1500));
        assert_eq!(door.open_for, Duration::from_secs(45));
        assert_eq!(door.services.len(), 2);
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let err =
            parse_str("[door.ssh]\nsequence = [\"7000\"]\nprotect = [\"tcp/22\"]\nopen_fro = 3\n")
                .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("test.toml:4:"), "{msg}");
        assert!(msg.contains("open_fro"), "{msg}");
    }

    #[test]
    fn junk_port_names_line_and_item() {
        let err =
            parse_str("[door.ssh]\nprotect = [\"tcp/22\"]\nsequence = [\"7000\",\n  \"70x0\"]\n")
                .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("test.toml:4:4:"), "{msg}");
        assert!(msg.contains("door \"ssh\" sequence[1] \"70x0\""), "{msg}");
    }

    #[test]
    fn bad_values_are_refused() {
        let cases = [
            ("sequence = []\nprotect = [\"22\"]", "empty"),
            ("sequence = [\"1\"]\nprotect = [\"sctp/22\"]", "protect[0]"),
            (
                "sequence = [\"1\"]\nprotect = [\"22\"]\nopen_for = \"soon\"",
                "open_for",
            ),
            (
                "sequence = [\"1\"]\nprotect = [\"22\"]\nseq_timeout = 0",
                "seq_timeout",
            ),
            (
                "sequence = [\"1\"]\nprotect = [\"22\"]\ntcp_flags = \"syn,nope\"",
                "tcp_flags",
            ),
            ("sequence = [\"1\"]", "protects no service"),
            (
                "sequence = [\"22\"]\nprotect = [\"22\"]",
                "also a protected service",
            ),
            (
                "sequence = [\"1\"]\non_open = [\"echo\", \"%PORT%\"]",
                "%PORT%",
            ),
            (
                "sequence = [\"1\"]\nprotect = [\"22\"]\non_open = []",
                "on_open is empty",
            ),
        ];
        for (body, needle) in cases {
            let text = format!("[door.d]\n{body}\n");
            let msg = parse_str(&text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{body:?} gave {msg}");
            assert!(msg.starts_with("test.toml:"), "{msg}");
        }
        let long: Vec<String> = (1..=33).map(|p| format!("\"{p}\"")).collect();
        let text = format!(
            "[door.d]\nprotect=[\"22\"]\nsequence = [{}]\n",
            long.join(",")
        );
        assert!(parse_str(&text)
            .unwrap_err()
            .to_string()
            .contains("at most 32"));
    }

    #[test]
    fn daemon_settings_are_validated() {
        let door = "[door.d]\nsequence=[\"1\"]\nprotect=[\"22\"]\n";
        let ok = parse_str(&format!(
            "[daemon]\nnflog_group = 7\nmax_tracked = 5\ntable = \"t_1\"\n{door}"
        ))
        .unwrap();
        assert_eq!(ok.daemon.nflog_group, 7);
        assert_eq!(ok.daemon.max_tracked, 5);
        assert_eq!(ok.daemon.table, "t_1");
        for (bad, needle) in [
            ("nflog_group = 70000", "nflog_group"),
            ("max_tracked = 0", "max_tracked"),
            ("table = \"a b\"", "daemon.table"),
            ("bogus = 1", "bogus"),
        ] {
            let msg = parse_str(&format!("[daemon]\n{bad}\n{door}"))
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(needle) && msg.starts_with("test.toml:2:"),
                "{msg}"
            );
        }
        assert!(matches!(
            parse_str("[daemon]\n"),
            Err(ConfigError::NoDoors { .. })
        ));
    }
}
