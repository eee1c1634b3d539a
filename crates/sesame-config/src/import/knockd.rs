//! knockd.conf support: a strict parser for knockd's INI-like config, its
//! conversion to Sesame's [`Config`], and `sesame import knockd`, which prints
//! the equivalent Sesame TOML with comments.
//!
//! The syntax is knockd 0.8's:
//! - `key = value` lines; keys are case-insensitive; whitespace around keys,
//!   values and lines is ignored; a line whose first non-blank character is
//!   `#` is a comment; blank lines are skipped;
//! - `[options]` is the global section (`UseSyslog`, `LogFile`, `PidFile`,
//!   `Interface`); every other `[section]` is a door named after it.
//!
//! Where knockd silently accepted junk (`atoi` turns `70x0` into port 0, an
//! unknown `:proto` means TCP), this parser refuses it. Every error names
//! `file:line` and the offending key or item. Sesame extensions: `Interface`
//! takes a comma-separated list and may be repeated.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sesame_core::door::{CommandTemplate, Commands};
use sesame_core::{Door, DoorError, Knock, Proto, TcpFlags};

use crate::model::{Config, DaemonSettings};
use sesame_client::located::{FileError, Located, ReadError};

use crate::one_time::{OneTimeError, OneTimeFile};

/// knockd's default `Seq_Timeout` (`SEQ_TIMEOUT`).
pub const DEFAULT_SEQ_TIMEOUT: Duration = Duration::from_secs(25);
/// knockd's default `Cmd_Timeout` (`CMD_TIMEOUT`).
pub const DEFAULT_CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// knockd's default config file.
pub const DEFAULT_PATH: &str = "/etc/knockd.conf";

/// Why a knockd config (or one of its one-time sequence files) was refused.
#[derive(Debug, thiserror::Error)]
pub enum KnockdError {
    /// The file is unusable: permissions, reading, or an item in it.
    #[error(transparent)]
    File(FileError),
    /// A door's one-time sequence file is unusable.
    #[error("{path}:{line}: {item}: {source}")]
    OneTime {
        /// The knockd config file.
        path: String,
        /// Line of the `One_Time_Sequences` key.
        line: usize,
        /// The key, e.g. `[door] One_Time_Sequences "/etc/knockd.ots"`.
        item: String,
        /// What is wrong with the sequence file (names its own file:line).
        source: Box<OneTimeError>,
    },
}

sesame_client::file_error_conversions!(KnockdError);

pub use crate::one_time::{parse_sequence, SequenceError};

/// Sesame's name for a knockd door: characters other than ASCII letters,
/// digits, `.`, `_` and `-` become `_`.
pub fn sesame_door_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A value read from the config, with where it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting<T> {
    /// The parsed value.
    pub value: T,
    /// 1-based line number.
    pub line: usize,
    /// The key as written in the file (e.g. `command` for `Start_Command`).
    pub key: String,
}

/// A parsed knockd config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnockdConfig {
    /// The file it was read from (named in errors).
    pub path: PathBuf,
    /// The `[options]` section.
    pub options: KnockdOptions,
    /// Doors, in file order.
    pub doors: Vec<KnockdDoor>,
}

/// knockd's `[options]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnockdOptions {
    /// `UseSyslog`.
    pub use_syslog: bool,
    /// `LogFile = path`.
    pub log_file: Option<PathBuf>,
    /// `PidFile = path`.
    pub pid_file: Option<PathBuf>,
    /// `Interface = name`; Sesame also accepts a comma-separated list and
    /// repeated `Interface` lines. Empty when not set.
    pub interfaces: Vec<String>,
}

/// One knockd door (a `[section]` other than `[options]`). Optional settings
/// are `None` when absent; the accessors apply knockd's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnockdDoor {
    /// Section name as written (see [`KnockdDoor::sesame_name`]).
    pub name: String,
    /// Line of the `[section]` header.
    pub line: usize,
    /// `Sequence`.
    pub sequence: Option<Setting<Vec<Knock>>>,
    /// `One_Time_Sequences`.
    pub one_time_sequences: Option<Setting<PathBuf>>,
    /// `Seq_Timeout` (alias `Timeout`).
    pub seq_timeout: Option<Setting<Duration>>,
    /// `TCPFlags`.
    pub tcp_flags: Option<Setting<TcpFlags>>,
    /// `Start_Command` (alias `Command`).
    pub start_command: Option<Setting<String>>,
    /// `Start_Command_6` (alias `Command_6`); an empty value disables it.
    pub start_command_6: Option<Setting<String>>,
    /// `Stop_Command`.
    pub stop_command: Option<Setting<String>>,
    /// `Stop_Command_6`; an empty value disables it.
    pub stop_command_6: Option<Setting<String>>,
    /// `Cmd_Timeout`.
    pub cmd_timeout: Option<Setting<Duration>>,
    /// `Target`.
    pub target: Option<Setting<IpAddr>>,
}

/// The command lines for each family after knockd's `_6` fallback.
fn resolve_commands<'a>(
    v4: &'a Option<Setting<String>>,
    v6: &'a Option<Setting<String>>,
) -> (Option<&'a str>, Option<&'a str>) {
    let v4 = v4
        .as_ref()
        .map(|s| s.value.as_str())
        .filter(|s| !s.is_empty());
    let v6 = match v6 {
        None => v4,
        Some(s) if s.value.is_empty() => None,
        Some(s) => Some(s.value.as_str()),
    };
    (v4, v6)
}

impl KnockdDoor {
    fn new(name: &str, line: usize) -> Self {
        KnockdDoor {
            name: name.to_string(),
            line,
            sequence: None,
            one_time_sequences: None,
            seq_timeout: None,
            tcp_flags: None,
            start_command: None,
            start_command_6: None,
            stop_command: None,
            stop_command_6: None,
            cmd_timeout: None,
            target: None,
        }
    }

    /// The door's name in Sesame (see [`sesame_door_name`]).
    pub fn sesame_name(&self) -> String {
        sesame_door_name(&self.name)
    }

    /// `Seq_Timeout`, or knockd's default of 25 s.
    pub fn seq_timeout(&self) -> Duration {
        self.seq_timeout
            .as_ref()
            .map_or(DEFAULT_SEQ_TIMEOUT, |s| s.value)
    }

    /// `Cmd_Timeout`, or knockd's default of 10 s.
    pub fn cmd_timeout(&self) -> Duration {
        self.cmd_timeout
            .as_ref()
            .map_or(DEFAULT_CMD_TIMEOUT, |s| s.value)
    }

    /// `TCPFlags`; absent means no constraint at all (knockd's "don't care").
    pub fn tcp_flags(&self) -> TcpFlags {
        self.tcp_flags
            .as_ref()
            .map_or(TcpFlags { set: 0, clear: 0 }, |s| s.value)
    }

    /// Start command lines for IPv4 and IPv6 knockers: `Start_Command_6`
    /// falls back to `Start_Command` when absent and is disabled when empty.
    pub fn start_commands(&self) -> (Option<&str>, Option<&str>) {
        resolve_commands(&self.start_command, &self.start_command_6)
    }

    /// Stop command lines for IPv4 and IPv6 knockers, with the same fallback.
    pub fn stop_commands(&self) -> (Option<&str>, Option<&str>) {
        resolve_commands(&self.stop_command, &self.stop_command_6)
    }

    /// Line to blame for a problem with the on_open / on_close commands.
    fn command_line(&self, key: &str) -> usize {
        let (a, b) = if key == "on_close" {
            (&self.stop_command, &self.stop_command_6)
        } else {
            (&self.start_command, &self.start_command_6)
        };
        a.as_ref().or(b.as_ref()).map_or(self.line, |s| s.line)
    }
}

/// Reads and parses a knockd config file.
pub fn load(path: &Path) -> Result<KnockdConfig, KnockdError> {
    sesame_client::secure_file::check_not_writable_by_others(path)?;
    let text = std::fs::read_to_string(path).map_err(ReadError::of(path, "knockd config"))?;
    parse(&text, path)
}

/// Parses knockd config text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<KnockdConfig, KnockdError> {
    Parser {
        path: path.display().to_string(),
        options: KnockdOptions::default(),
        option_lines: BTreeMap::new(),
        doors: Vec::new(),
    }
    .run(text)
    .map(|(options, doors)| KnockdConfig {
        path: path.to_path_buf(),
        options,
        doors,
    })
}

enum Section {
    None,
    Options,
    Door(usize),
}

struct Parser {
    path: String,
    options: KnockdOptions,
    /// Option key (upper case) → line where it was first set.
    option_lines: BTreeMap<&'static str, usize>,
    doors: Vec<KnockdDoor>,
}

impl Parser {
    fn err(&self, line: usize, item: impl Into<String>, message: impl ToString) -> KnockdError {
        KnockdError::from(Located {
            path: self.path.clone(),
            line,
            column: None,
            item: item.into(),
            message: message.to_string(),
        })
    }

    fn run(mut self, text: &str) -> Result<(KnockdOptions, Vec<KnockdDoor>), KnockdError> {
        let mut section = Section::None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if trimmed.starts_with('[') {
                section = self.section(line, trimmed)?;
                continue;
            }
            let (key, value) = match trimmed.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (trimmed, None),
            };
            match section {
                Section::None => {
                    return Err(self.err(
                        line,
                        format!("{key:?}"),
                        "setting outside of any section: put it under [options] or under a [door] section",
                    ))
                }
                Section::Options => self.option(line, key, value)?,
                Section::Door(i) => self.door_key(i, line, key, value)?,
            }
        }
        for door in &self.doors {
            self.check_door(door)?;
        }
        Ok((self.options, self.doors))
    }

    fn section(&mut self, line: usize, text: &str) -> Result<Section, KnockdError> {
        let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
            return Err(self.err(
                line,
                text,
                "a section header must be the whole line: [options] or [door name]",
            ));
        };
        let name = inner.trim();
        if name.is_empty() {
            return Err(self.err(line, text, "empty section name"));
        }
        if name.eq_ignore_ascii_case("options") {
            return Ok(Section::Options);
        }
        if let Some(prev) = self.doors.iter().find(|d| d.name == name) {
            return Err(self.err(
                line,
                format!("[{name}]"),
                format!("duplicate door name (first defined on line {})", prev.line),
            ));
        }
        let sesame = sesame_door_name(name);
        if let Some(prev) = self.doors.iter().find(|d| d.sesame_name() == sesame) {
            return Err(self.err(
                line,
                format!("[{name}]"),
                format!(
                    "[{}] (line {}) and this door both become Sesame door {sesame:?} \
                     (characters other than letters, digits, '.', '_' and '-' become '_'); rename one",
                    prev.name, prev.line
                ),
            ));
        }
        self.doors.push(KnockdDoor::new(name, line));
        Ok(Section::Door(self.doors.len() - 1))
    }

    fn option(&mut self, line: usize, key: &str, value: Option<&str>) -> Result<(), KnockdError> {
        let upper = key.to_ascii_uppercase();
        let item = format!("[options] {key}");
        let canonical: &'static str = match upper.as_str() {
            "USESYSLOG" => "USESYSLOG",
            "LOGFILE" => "LOGFILE",
            "PIDFILE" => "PIDFILE",
            "INTERFACE" => "INTERFACE",
            _ => return Err(self.err(
                line,
                format!("[options] {key:?}"),
                "unknown option: [options] accepts only UseSyslog, LogFile, PidFile and Interface",
            )),
        };
        if canonical == "USESYSLOG" {
            if value.is_some() {
                return Err(self.err(
                    line,
                    item,
                    "UseSyslog is a flag: write it alone on its line, without '='",
                ));
            }
            self.options.use_syslog = true;
            return Ok(());
        }
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Err(self.err(line, item, format!("expected `{key} = value`")));
        };
        if canonical != "INTERFACE" {
            if let Some(first) = self.option_lines.get(canonical) {
                return Err(self.err(line, item, format!("given twice (first on line {first})")));
            }
            self.option_lines.insert(canonical, line);
        }
        match canonical {
            "LOGFILE" => self.options.log_file = Some(PathBuf::from(value)),
            "PIDFILE" => self.options.pid_file = Some(PathBuf::from(value)),
            _ => {
                for name in value.split(',').map(str::trim) {
                    if !crate::model::valid_interface_name(name) {
                        return Err(self.err(
                            line,
                            format!("{item} {name:?}"),
                            "expected interface names of 1 to 15 characters, separated by commas",
                        ));
                    }
                    if self.options.interfaces.iter().any(|i| i == name) {
                        return Err(self.err(
                            line,
                            format!("{item} {name:?}"),
                            "interface given twice",
                        ));
                    }
                    self.options.interfaces.push(name.to_string());
                }
            }
        }
        Ok(())
    }

    fn door_key(
        &mut self,
        index: usize,
        line: usize,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), KnockdError> {
        let door_name = self.doors[index].name.clone();
        let item = format!("[{door_name}] {key}");
        let upper = key.to_ascii_uppercase();
        let known = matches!(
            upper.as_str(),
            "SEQUENCE"
                | "ONE_TIME_SEQUENCES"
                | "SEQ_TIMEOUT"
                | "TIMEOUT"
                | "TCPFLAGS"
                | "START_COMMAND"
                | "COMMAND"
                | "START_COMMAND_6"
                | "COMMAND_6"
                | "STOP_COMMAND"
                | "STOP_COMMAND_6"
                | "CMD_TIMEOUT"
                | "TARGET"
        );
        if !known {
            return Err(self.err(
                line,
                format!("[{door_name}] {key:?}"),
                "unknown door setting: expected Sequence, One_Time_Sequences, Seq_Timeout, \
                 TCPFlags, Start_Command, Start_Command_6, Stop_Command, Stop_Command_6, \
                 Cmd_Timeout or Target",
            ));
        }
        let Some(value) = value else {
            return Err(self.err(line, item, format!("expected `{key} = value`")));
        };
        fn setting<T>(value: T, line: usize, key: &str) -> Setting<T> {
            Setting {
                value,
                line,
                key: key.to_string(),
            }
        }
        // Reports a key given twice (aliases included).
        let twice = |prev: Option<usize>| match prev {
            Some(first) => Err(self.err(
                line,
                item.clone(),
                format!("given twice (first on line {first})"),
            )),
            None => Ok(()),
        };
        let door = &self.doors[index];
        match upper.as_str() {
            "SEQUENCE" => {
                twice(door.sequence.as_ref().map(|s| s.line))?;
                let knocks = parse_sequence(value).map_err(|e| match e {
                    SequenceError::BadItem {
                        index: i,
                        item: text,
                        reason,
                    } => self.err(line, format!("{item} item {i} {text:?}"), reason),
                    other => self.err(line, item.clone(), other),
                })?;
                self.doors[index].sequence = Some(setting(knocks, line, key));
            }
            "ONE_TIME_SEQUENCES" => {
                twice(door.one_time_sequences.as_ref().map(|s| s.line))?;
                if value.is_empty() {
                    return Err(self.err(line, item, "expected the path of a sequence file"));
                }
                self.doors[index].one_time_sequences =
                    Some(setting(PathBuf::from(value), line, key));
            }
            "SEQ_TIMEOUT" | "TIMEOUT" | "CMD_TIMEOUT" => {
                let slot = if upper == "CMD_TIMEOUT" {
                    &door.cmd_timeout
                } else {
                    &door.seq_timeout
                };
                twice(slot.as_ref().map(|s| s.line))?;
                let secs = parse_seconds(value)
                    .map_err(|m| self.err(line, format!("{item} {value:?}"), m))?;
                let door = &mut self.doors[index];
                let slot = if upper == "CMD_TIMEOUT" {
                    &mut door.cmd_timeout
                } else {
                    &mut door.seq_timeout
                };
                *slot = Some(setting(secs, line, key));
            }
            "TCPFLAGS" => {
                twice(door.tcp_flags.as_ref().map(|s| s.line))?;
                let flags: TcpFlags = value
                    .parse()
                    .map_err(|e: DoorError| self.err(line, format!("{item} {value:?}"), e))?;
                self.doors[index].tcp_flags = Some(setting(flags, line, key));
            }
            "TARGET" => {
                twice(door.target.as_ref().map(|s| s.line))?;
                let ip: IpAddr = value.parse().map_err(|_| {
                    self.err(
                        line,
                        format!("{item} {value:?}"),
                        "expected an IPv4 or IPv6 address",
                    )
                })?;
                self.doors[index].target = Some(setting(ip, line, key));
            }
            command => {
                let prev = match command {
                    "START_COMMAND" | "COMMAND" => &door.start_command,
                    "START_COMMAND_6" | "COMMAND_6" => &door.start_command_6,
                    "STOP_COMMAND" => &door.stop_command,
                    _ => &door.stop_command_6,
                };
                twice(prev.as_ref().map(|s| s.line))?;
                let door = &mut self.doors[index];
                let slot = match command {
                    "START_COMMAND" | "COMMAND" => &mut door.start_command,
                    "START_COMMAND_6" | "COMMAND_6" => &mut door.start_command_6,
                    "STOP_COMMAND" => &mut door.stop_command,
                    _ => &mut door.stop_command_6,
                };
                *slot = Some(setting(value.to_string(), line, key));
            }
        }
        Ok(())
    }

    fn check_door(&self, door: &KnockdDoor) -> Result<(), KnockdError> {
        let label = format!("[{}]", door.name);
        match (&door.sequence, &door.one_time_sequences) {
            (Some(a), Some(b)) => {
                let later = a.line.max(b.line);
                return Err(self.err(
                    later,
                    format!("{label} {}", if later == b.line { &b.key } else { &a.key }),
                    "give either Sequence or One_Time_Sequences, not both",
                ));
            }
            (None, None) => {
                return Err(self.err(
                    door.line,
                    label,
                    "the door has no Sequence (or One_Time_Sequences)",
                ))
            }
            _ => {}
        }
        if door.start_commands() == (None, None) {
            return Err(self.err(
                door.line,
                label,
                "the door has no Start_Command (or Start_Command_6), so opening it would do nothing",
            ));
        }
        Ok(())
    }
}

/// A whole number of seconds, at least 1.
fn parse_seconds(value: &str) -> Result<Duration, String> {
    let bad = || "expected a whole number of seconds from 1 to 4294967295".to_string();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match value.parse::<u32>() {
        Ok(0) => Err("must be longer than zero".to_string()),
        Ok(s) => Ok(Duration::from_secs(u64::from(s))),
        Err(_) => Err(bad()),
    }
}

impl KnockdConfig {
    /// Converts to Sesame's model. `path` becomes [`Config::path`]; errors
    /// name this knockd file and its lines.
    ///
    /// knockd doors only run commands, so the doors protect no service:
    /// `Start_Command`/`Stop_Command` become `/bin/sh -c` commands (with the
    /// `_6` fallback), `Cmd_Timeout` becomes `open_for`. For a
    /// `One_Time_Sequences` door the sequence is the file's first unused one,
    /// and [`Config::one_time`] maps the door to the file.
    pub fn to_config(&self, path: &Path) -> Result<Config, KnockdError> {
        let shown = self.path.display().to_string();
        let invalid = |line, item: String, message: String| {
            KnockdError::from(Located {
                path: shown.clone(),
                line,
                column: None,
                item,
                message,
            })
        };
        let mut doors = Vec::with_capacity(self.doors.len());
        let mut one_time = BTreeMap::new();
        for kd in &self.doors {
            let label = format!("[{}]", kd.name);
            let sequence = match (&kd.sequence, &kd.one_time_sequences) {
                (Some(seq), _) => seq.value.clone(),
                (None, Some(file)) => {
                    let item = format!("{label} {} {:?}", file.key, file.value.display());
                    let otf =
                        OneTimeFile::open(&file.value).map_err(|source| KnockdError::OneTime {
                            path: shown.clone(),
                            line: file.line,
                            item: item.clone(),
                            source: Box::new(source),
                        })?;
                    let Some(current) = otf.current() else {
                        return Err(invalid(
                            file.line,
                            item,
                            format!(
                                "{}: no unused sequence left (every line starts with '#')",
                                file.value.display()
                            ),
                        ));
                    };
                    one_time.insert(kd.sesame_name(), file.value.clone());
                    current.to_vec()
                }
                (None, None) => {
                    return Err(invalid(kd.line, label, "the door has no Sequence".into()))
                }
            };
            let commands = |(v4, v6): (Option<&str>, Option<&str>)| Commands {
                v4: v4.map(CommandTemplate::shell),
                v6: v6.map(CommandTemplate::shell),
            };
            let door = Door {
                name: kd.sesame_name(),
                sequence,
                seq_timeout: kd.seq_timeout(),
                open_for: kd.cmd_timeout(),
                tcp_flags: kd.tcp_flags(),
                services: Vec::new(),
                target: kd.target.as_ref().map(|t| t.value),
                on_open: commands(kd.start_commands()),
                on_close: commands(kd.stop_commands()),
                guard: sesame_core::Guard::Auto,
                forwards: Vec::new(),
            };
            door.validate().map_err(|e| {
                let line = match &e {
                    DoorError::EmptySequence | DoorError::SequenceTooLong(_) => {
                        kd.sequence.as_ref().map_or(kd.line, |s| s.line)
                    }
                    DoorError::EmptyCommand(key)
                    | DoorError::ServicePlaceholderWithoutService(key) => kd.command_line(key),
                    DoorError::BadTcpFlag(_) => kd.tcp_flags.as_ref().map_or(kd.line, |s| s.line),
                    _ => kd.line,
                };
                let message = match &e {
                    DoorError::ServicePlaceholderWithoutService(_) => format!(
                        "{e} (knockd passed %PORT% and %PROTO% to the shell unchanged; \
                         Sesame substitutes them)"
                    ),
                    _ => e.to_string(),
                };
                invalid(line, label.clone(), message)
            })?;
            doors.push(door);
        }
        doors.sort_by(|a, b| a.name.cmp(&b.name));
        let interfaces = if self.options.interfaces.iter().any(|i| i == "any") {
            Vec::new()
        } else {
            self.options.interfaces.clone()
        };
        Ok(Config {
            path: path.to_path_buf(),
            daemon: DaemonSettings {
                interfaces,
                log_file: self.options.log_file.clone(),
                syslog: self.options.use_syslog,
                pid_file: self.options.pid_file.clone(),
                ..DaemonSettings::default()
            },
            doors,
            one_time,
            ..Config::default()
        })
    }

    /// The equivalent Sesame TOML, with comments explaining each mapping and
    /// where Sesame behaves differently (printed by `sesame import knockd`).
    pub fn to_sesame_toml(&self) -> String {
        let mut out = String::new();
        let mut put = |text: &str| {
            out.push_str(text);
            out.push('\n');
        };
        put(&format!(
            "# Sesame configuration converted from the knockd config {} by\n\
             # `sesame import knockd`. Check it with `sesamed --check-config FILE`.",
            self.path.display()
        ));
        put(HEADER_NOTES);
        put("");
        put("[daemon]");
        let o = &self.options;
        if o.use_syslog {
            put("# knockd: UseSyslog.");
            put("syslog = true");
        } else {
            put("# knockd: no UseSyslog. Set this to also log through syslog.");
            put("# syslog = true");
        }
        if let Some(f) = &o.log_file {
            put("# knockd: LogFile. Sesame's lines carry microsecond timestamps (knockd's: minutes).");
            put(&format!("log_file = {}", toml_str(&f.to_string_lossy())));
        }
        if let Some(f) = &o.pid_file {
            put("# knockd: PidFile (knockd wrote it only with -d; sesamed writes it while it runs).");
            put(&format!("pid_file = {}", toml_str(&f.to_string_lossy())));
        }
        if o.interfaces.is_empty() {
            put(
                "# knockd: no Interface, so knockd sniffed eth0 (or its -i) only. Sesame sees\n\
                 # knocks on every interface unless this is set, e.g.:\n\
                 # interfaces = [\"eth0\"]",
            );
        } else if o.interfaces.iter().any(|i| i == "any") {
            put(
                "# knockd: Interface = any. Sesame sees knocks on every interface when\n\
                 # `interfaces` is not set, and (unlike knockd with `any`) over IPv6 too.",
            );
        } else {
            put("# knockd: Interface. knockd sniffed a single interface; Sesame matches knocks\n\
                 # arriving on any of these (by name, any link type: Ethernet, tun, WireGuard, PPP).");
            let list: Vec<String> = o.interfaces.iter().map(|i| toml_str(i)).collect();
            put(&format!("interfaces = [{}]", list.join(", ")));
        }
        for d in &self.doors {
            put("");
            let name = d.sesame_name();
            put(&format!("# knockd door [{}] (line {}).", d.name, d.line));
            if name != d.name {
                put(&format!(
                    "# Renamed to {name:?}: Sesame door names use only letters, digits, '.', '_' and '-';\n\
                     # other characters become '_'."
                ));
            }
            let key = if name.contains('.') {
                format!("\"{name}\"")
            } else {
                name.clone()
            };
            put(&format!("[door.{key}]"));
            if let Some(seq) = &d.sequence {
                put(&format!(
                    "# {}: knocks in order, TCP unless marked :udp.",
                    seq.key
                ));
                let items: Vec<String> = seq
                    .value
                    .iter()
                    .map(|k| match k.proto {
                        Proto::Tcp => toml_str(&k.port.to_string()),
                        Proto::Udp => toml_str(&format!("{}:udp", k.port)),
                    })
                    .collect();
                put(&format!("sequence = [{}]", items.join(", ")));
            }
            if let Some(file) = &d.one_time_sequences {
                put(&format!(
                    "# {}: the sequence is the first unused line of this file. Once it opens\n\
                     # the door, '#' is written over the line's first character, as in knockd\n\
                     # (so start each line with a space). Sesame compares whole sequences\n\
                     # (knockd compared half) and follows the new sequence over IPv4 and IPv6\n\
                     # (knockd only over IPv4). When the last line is used the door is removed,\n\
                     # as in knockd; a file with no unused line is refused at start.\n\
                     # Clients: `sesame knock --one-time FILE HOST`.",
                    file.key
                ));
                put(&format!(
                    "one_time_sequences = {}",
                    toml_str(&file.value.to_string_lossy())
                ));
            }
            match &d.seq_timeout {
                Some(s) => put(&format!(
                    "# {} = {}: the whole knock must arrive within this many seconds of the\n\
                     # first knock (enforced as it expires, not at the next packet).",
                    s.key,
                    s.value.as_secs()
                )),
                None => put("# No Seq_Timeout: knockd's default, 25 seconds."),
            }
            put(&format!("seq_timeout = {}", d.seq_timeout().as_secs()));
            match &d.cmd_timeout {
                Some(s) => put(&format!(
                    "# {} = {}: knockd's time between the start and the stop command.",
                    s.key,
                    s.value.as_secs()
                )),
                None => put(
                    "# No Cmd_Timeout: knockd's default, 10 seconds between the start and the\n\
                     # stop command.",
                ),
            }
            put(
                "# In Sesame the door stays open this long, then the daemon's timer runs\n\
                 # on_close_shell. A new successful knock while it is open extends it and does\n\
                 # not run the start command again (knockd ran start, and later stop, once\n\
                 # per knock).",
            );
            put(&format!("open_for = {}", d.cmd_timeout().as_secs()));
            match &d.tcp_flags {
                Some(f) => {
                    put(&format!(
                        "# {}: TCP knocks with other flags are ignored (they do not reset the knock).",
                        f.key
                    ));
                    put(&format!("tcp_flags = {}", toml_str(&f.value.to_string())));
                }
                None => {
                    put("# No TCPFlags: knockd took TCP knocks with any flags. Sesame's own default\n\
                         # would be \"syn,!ack\" (a connection attempt).");
                    put("tcp_flags = \"\"");
                }
            }
            if let Some(t) = &d.target {
                put(&format!(
                    "# {}: knocks must be addressed to this IP.",
                    t.key
                ));
                put(&format!("target = {}", toml_str(&t.value.to_string())));
            }
            put(
                "# knockd doors only run commands, so this door protects no service itself.\n\
                 # If the start command only lets %IP% reach a port, `protect = [\"tcp/22\"]`\n\
                 # does that with a kernel-timed nftables grant instead: no iptables, no\n\
                 # duplicate rules, nothing left open by a crash, no separate closing door.",
            );
            put_commands(
                &mut put,
                "on_open_shell",
                &d.start_command,
                &d.start_command_6,
            );
            put_commands(
                &mut put,
                "on_close_shell",
                &d.stop_command,
                &d.stop_command_6,
            );
        }
        out
    }
}

/// General differences, printed once at the top of an imported config.
const HEADER_NOTES: &str = "#
# Where Sesame differs from knockd:
# - Knocks are tracked per (source address, door), as in knockd, but a repeated
#   hit on the port just matched (a SYN retransmit, a doubled knock) is ignored
#   instead of resetting the knock. Other wrong knock ports still reset it, and
#   other sources never disturb a knock in progress. The table is bounded.
# - Commands still run as `/bin/sh -c COMMAND` with %IP% replaced by the
#   knocker's address (taken from the validated packet, never a hostname).
#   Sesame also replaces %DOOR%, %PORT% and %PROTO%.
# - The stop command is run by the daemon's own timer, not by a sleeping child
#   process; on a clean stop, pending stop commands run before sesamed exits.
# - A successful knock while the door is already open for that address does not
#   run the start command again; it extends the door instead.";

/// Writes `key = ...` and `key_v6 = ...` for one event, with knockd's `_6`
/// fallback spelled out.
fn put_commands(
    put: &mut impl FnMut(&str),
    key: &str,
    v4: &Option<Setting<String>>,
    v6: &Option<Setting<String>>,
) {
    let v4 = v4.as_ref().filter(|s| !s.value.is_empty());
    if let Some(c) = v4 {
        put(&format!(
            "# {}: run through /bin/sh -c for IPv4 knockers (and IPv6 ones, unless\n\
             # {key}_v6 is set).",
            c.key
        ));
        put(&format!("{key} = {}", toml_str(&c.value)));
    }
    match v6 {
        None if v4.is_some() => put(&format!(
            "# No {}_6: IPv6 knockers run the same command (knockd's fallback).",
            if key == "on_open_shell" {
                "Start_Command"
            } else {
                "Stop_Command"
            }
        )),
        None => {}
        Some(c) if c.value.is_empty() => {
            put(&format!(
                "# {} is empty: nothing runs for IPv6 knockers.",
                c.key
            ));
            put(&format!("{key}_v6 = \"\""));
        }
        Some(c) => {
            put(&format!(
                "# {}: run through /bin/sh -c for IPv6 knockers.",
                c.key
            ));
            put(&format!("{key}_v6 = {}", toml_str(&c.value)));
        }
    }
}

/// A TOML string literal for `s`.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sesame_core::door::tcp_flag;

    const DEBIAN: &str = "[options]\n\tUseSyslog\n\n[openSSH]\n\tsequence    = 7000,8000,9000\n\tseq_timeout = 5\n\tcommand     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\ttcpflags    = syn\n\n[closeSSH]\n\tsequence    = 9000,8000,7000\n\tseq_timeout = 5\n\tcommand     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\ttcpflags    = syn\n";

    fn parse_str(text: &str) -> Result<KnockdConfig, KnockdError> {
        parse(text, Path::new("knockd.conf"))
    }

    fn err(text: &str) -> String {
        parse_str(text).unwrap_err().to_string()
    }

    /// A file in the temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str, contents: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("sesame-knockd-{}-{tag}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            std::fs::remove_file(&self.0).ok();
        }
    }

    #[test]
    fn debian_default_parses_unchanged() {
        let cfg = parse_str(DEBIAN).unwrap();
        assert!(cfg.options.use_syslog);
        assert_eq!(cfg.doors.len(), 2);
        let open = &cfg.doors[0];
        assert_eq!(open.name, "openSSH");
        assert_eq!(open.line, 4);
        assert_eq!(
            open.sequence.as_ref().unwrap().value,
            vec![Knock::tcp(7000), Knock::tcp(8000), Knock::tcp(9000)]
        );
        assert_eq!(open.seq_timeout(), Duration::from_secs(5));
        assert_eq!(open.cmd_timeout(), DEFAULT_CMD_TIMEOUT);
        assert_eq!(
            open.tcp_flags(),
            TcpFlags {
                set: tcp_flag::SYN,
                clear: 0
            }
        );
        let (v4, v6) = open.start_commands();
        assert_eq!(
            v4,
            Some("/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT")
        );
        assert_eq!(v6, v4);
        assert_eq!(open.stop_commands(), (None, None));
        assert_eq!(cfg.doors[1].name, "closeSSH");
        assert_eq!(
            cfg.doors[1].sequence.as_ref().unwrap().value,
            vec![Knock::tcp(9000), Knock::tcp(8000), Knock::tcp(7000)]
        );

        let conv = cfg.to_config(Path::new("knockd.conf")).unwrap();
        assert!(conv.daemon.syslog);
        assert!(conv.one_time.is_empty());
        let names: Vec<&str> = conv.doors.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["closeSSH", "openSSH"]);
        let door = &conv.doors[1];
        assert!(door.services.is_empty());
        assert_eq!(door.open_for, Duration::from_secs(10));
        assert_eq!(door.seq_timeout, Duration::from_secs(5));
        assert_eq!(
            door.on_open.v4,
            Some(CommandTemplate::shell(
                "/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT"
            ))
        );
        assert_eq!(door.on_open.v6, door.on_open.v4);
        assert!(door.on_close.is_empty());
        assert_eq!(door.target, None);
    }

    #[test]
    fn every_directive_is_accepted_case_insensitively() {
        let text = "\
# a comment
   # an indented comment
[OPTIONS]
usesyslog
LOGFILE = /var/log/knockd.log
pidfile=/run/knockd.pid
Interface = eth0

[Web]
SEQUENCE = 1000:UDP , 2000:tcp,3000
seq_TIMEOUT = 7
TcpFlags = syn,!ack, !fin
START_COMMAND = start4 %IP%
start_command_6 = start6 %IP%
Stop_Command = stop4 %IP%
STOP_COMMAND_6 = stop6 %IP%
cmd_timeout = 60
target = 192.0.2.1

[alias]
sequence = 5
timeout = 9
Command = c4
COMMAND_6 = c6
";
        let cfg = parse_str(text).unwrap();
        let o = &cfg.options;
        assert!(o.use_syslog);
        assert_eq!(
            o.log_file.as_deref(),
            Some(Path::new("/var/log/knockd.log"))
        );
        assert_eq!(o.pid_file.as_deref(), Some(Path::new("/run/knockd.pid")));
        assert_eq!(o.interfaces, ["eth0"]);
        let web = &cfg.doors[0];
        assert_eq!(web.line, 9);
        assert_eq!(
            web.sequence.as_ref().unwrap().value,
            vec![Knock::udp(1000), Knock::tcp(2000), Knock::tcp(3000)]
        );
        assert_eq!(web.seq_timeout(), Duration::from_secs(7));
        assert_eq!(
            web.tcp_flags(),
            TcpFlags {
                set: tcp_flag::SYN,
                clear: tcp_flag::ACK | tcp_flag::FIN
            }
        );
        assert_eq!(
            web.start_commands(),
            (Some("start4 %IP%"), Some("start6 %IP%"))
        );
        assert_eq!(
            web.stop_commands(),
            (Some("stop4 %IP%"), Some("stop6 %IP%"))
        );
        assert_eq!(web.cmd_timeout(), Duration::from_secs(60));
        assert_eq!(
            web.target.as_ref().unwrap().value,
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        let alias = &cfg.doors[1];
        assert_eq!(alias.seq_timeout(), Duration::from_secs(9));
        assert_eq!(alias.seq_timeout.as_ref().unwrap().key, "timeout");
        assert_eq!(alias.start_commands(), (Some("c4"), Some("c6")));
        assert_eq!(alias.tcp_flags(), TcpFlags { set: 0, clear: 0 });
        assert_eq!(alias.cmd_timeout(), DEFAULT_CMD_TIMEOUT);

        let conv = cfg.to_config(Path::new("x")).unwrap();
        assert_eq!(conv.path, Path::new("x"));
        assert_eq!(conv.daemon.interfaces, ["eth0"]);
        assert_eq!(
            conv.daemon.log_file.as_deref(),
            Some(Path::new("/var/log/knockd.log"))
        );
        assert_eq!(
            conv.daemon.pid_file.as_deref(),
            Some(Path::new("/run/knockd.pid"))
        );
        let web = conv.doors.iter().find(|d| d.name == "Web").unwrap();
        assert_eq!(web.open_for, Duration::from_secs(60));
        assert_eq!(web.target, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(web.on_close.v6, Some(CommandTemplate::shell("stop6 %IP%")));
        assert_eq!(web.on_open.v4, Some(CommandTemplate::shell("start4 %IP%")));
    }

    #[test]
    fn command_6_falls_back_or_is_disabled_when_empty() {
        let cfg = parse_str(
            "[a]\nsequence=1\nstart_command = s\nstop_command = t\n\
             [b]\nsequence=2\nstart_command = s\nstart_command_6 =\nstop_command = t\nstop_command_6 =\n\
             [c]\nsequence=3\nstart_command_6 = s6\n",
        )
        .unwrap();
        assert_eq!(cfg.doors[0].start_commands(), (Some("s"), Some("s")));
        assert_eq!(cfg.doors[0].stop_commands(), (Some("t"), Some("t")));
        assert_eq!(cfg.doors[1].start_commands(), (Some("s"), None));
        assert_eq!(cfg.doors[1].stop_commands(), (Some("t"), None));
        assert_eq!(cfg.doors[2].start_commands(), (None, Some("s6")));
        let conv = cfg.to_config(Path::new("k")).unwrap();
        assert_eq!(conv.doors[1].on_open.v6, None);
        assert_eq!(conv.doors[1].on_close.v6, None);
        assert_eq!(conv.doors[2].on_open.v4, None);
        assert_eq!(conv.doors[2].on_open.v6, Some(CommandTemplate::shell("s6")));
    }

    #[test]
    fn interfaces_may_be_a_list_and_repeated() {
        let cfg = parse_str(
            "[options]\ninterface = eth0, wlan0\nInterface=wg0\n[d]\nsequence=1\ncommand=x\n",
        )
        .unwrap();
        assert_eq!(cfg.options.interfaces, ["eth0", "wlan0", "wg0"]);
        let conv = cfg.to_config(Path::new("k")).unwrap();
        assert_eq!(conv.daemon.interfaces, ["eth0", "wlan0", "wg0"]);
        let any = parse_str("[options]\ninterface = any\n[d]\nsequence=1\ncommand=x\n").unwrap();
        assert!(any
            .to_config(Path::new("k"))
            .unwrap()
            .daemon
            .interfaces
            .is_empty());
        for (bad, needle) in [
            ("interface = eth0,,wlan0", "\"\""),
            ("interface = eth0\ninterface = eth0", "twice"),
            ("interface = averyveryverylongname", "averyveryverylongname"),
            ("interface =", "expected `interface = value`"),
        ] {
            let msg = err(&format!("[options]\n{bad}\n[d]\nsequence=1\ncommand=x\n"));
            assert!(msg.starts_with("knockd.conf:"), "{msg}");
            assert!(msg.contains(needle), "{bad:?} gave {msg}");
        }
    }

    #[test]
    fn junk_ports_are_rejected_with_line_and_item() {
        for (seq, needle) in [
            ("7000,70x0,9000", "item 2 \"70x0\""),
            ("7000,0", "item 2 \"0\""),
            ("65536", "item 1 \"65536\""),
            ("7000:icmp", "item 1 \"7000:icmp\""),
            ("7000,,8000", "item 2 \"\""),
            ("+7000", "item 1 \"+7000\""),
            ("-1", "item 1 \"-1\""),
            ("", "empty"),
        ] {
            let msg = err(&format!("[d]\ncommand = x\n\nsequence = {seq}\n"));
            assert!(
                msg.starts_with("knockd.conf:4: [d] sequence"),
                "{seq:?} gave {msg}"
            );
            assert!(msg.contains(needle), "{seq:?} gave {msg}");
        }
        let long: Vec<String> = (1..=33).map(|p| p.to_string()).collect();
        let msg = err(&format!("[d]\ncommand=x\nsequence={}\n", long.join(",")));
        assert!(
            msg.contains("knockd.conf:3:") && msg.contains("at most 32"),
            "{msg}"
        );
        let max: Vec<String> = (1..=32).map(|p| p.to_string()).collect();
        parse_str(&format!("[d]\ncommand=x\nsequence={}\n", max.join(","))).unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_lines_name_their_line() {
        for (text, prefix, needle) in [
            (
                "[options]\nUseSyslog\nDebug = 1\n",
                "knockd.conf:3:",
                "\"Debug\"",
            ),
            (
                "[d]\nsequence=1\ncommand=x\nsequense = 2\n",
                "knockd.conf:4:",
                "\"sequense\"",
            ),
            ("sequence = 1\n", "knockd.conf:1:", "outside of any section"),
            ("[options]\nUseSyslog = yes\n", "knockd.conf:2:", "flag"),
            ("[d\nsequence=1\n", "knockd.conf:1:", "section header"),
            ("[ ]\n", "knockd.conf:1:", "empty section name"),
            (
                "[d]\nsequence\ncommand=x\n",
                "knockd.conf:2:",
                "expected `sequence = value`",
            ),
            (
                "[d]\nsequence=1\ncommand=x\nseq_timeout = 0\n",
                "knockd.conf:4:",
                "longer than zero",
            ),
            (
                "[d]\nsequence=1\ncommand=x\ncmd_timeout = 5s\n",
                "knockd.conf:4:",
                "\"5s\"",
            ),
            (
                "[d]\nsequence=1\ncommand=x\ntcpflags = syn,bogus\n",
                "knockd.conf:4:",
                "bogus",
            ),
            (
                "[d]\nsequence=1\ncommand=x\ntarget = router\n",
                "knockd.conf:4:",
                "\"router\"",
            ),
            (
                "[d]\nsequence=1\ncommand=x\ntimeout=3\nseq_timeout=4\n",
                "knockd.conf:5:",
                "first on line 4",
            ),
            (
                "[d]\nsequence=1\ncommand=x\nstart_command=y\n",
                "knockd.conf:4:",
                "twice",
            ),
            (
                "[options]\nlogfile=a\nLogFile=b\n",
                "knockd.conf:3:",
                "twice",
            ),
            (
                "[d]\nsequence=1\ncommand=x\n[e]\nsequence=2\ncommand=y\n[d]\n",
                "knockd.conf:7: [d]",
                "duplicate door name (first defined on line 1)",
            ),
            (
                "[a b]\nsequence=1\ncommand=x\n[a_b]\nsequence=2\ncommand=y\n",
                "knockd.conf:4:",
                "both become Sesame door \"a_b\"",
            ),
            (
                "[d]\nsequence=1\n",
                "knockd.conf:1: [d]",
                "no Start_Command",
            ),
            ("[d]\ncommand=x\n", "knockd.conf:1: [d]", "no Sequence"),
            (
                "[d]\nsequence=1\ncommand=\n",
                "knockd.conf:1: [d]",
                "no Start_Command",
            ),
            (
                "[d]\ncommand=x\nsequence=1\none_time_sequences=/f\n",
                "knockd.conf:4: [d] one_time_sequences",
                "not both",
            ),
            (
                "[d]\ncommand=x\none_time_sequences=\n",
                "knockd.conf:3:",
                "path",
            ),
        ] {
            let msg = err(text);
            assert!(msg.starts_with(prefix), "{text:?} gave {msg}");
            assert!(msg.contains(needle), "{text:?} gave {msg}");
        }
    }

    #[test]
    fn door_names_are_sanitized() {
        assert_eq!(sesame_door_name("open SSH!"), "open_SSH_");
        assert_eq!(sesame_door_name("a.b-c_D9"), "a.b-c_D9");
        assert_eq!(sesame_door_name("été"), "_t_");
        let cfg = parse_str("[open SSH]\nsequence=1\ncommand=x\n").unwrap();
        let conv = cfg.to_config(Path::new("k")).unwrap();
        assert_eq!(conv.doors[0].name, "open_SSH");
        assert!(cfg.to_sesame_toml().contains("Renamed to \"open_SSH\""));
    }

    #[test]
    fn core_validation_errors_name_the_line() {
        let msg = parse_str("[d]\nsequence=1\n\ncommand = echo %PORT%\n")
            .unwrap()
            .to_config(Path::new("k"))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("knockd.conf:4: [d]: "), "{msg}");
        assert!(msg.contains("%PORT%"), "{msg}");
    }

    #[test]
    fn one_time_door_takes_the_first_unused_sequence() {
        let ots = TempFile::new("ots", "#1,2\n 3000:udp,4000\n 5000\n");
        let text = format!(
            "[pad]\none_time_sequences = {}\ncommand = x\n",
            ots.0.display()
        );
        let cfg = parse_str(&text).unwrap();
        let conv = cfg.to_config(Path::new("k")).unwrap();
        assert_eq!(
            conv.doors[0].sequence,
            vec![Knock::udp(3000), Knock::tcp(4000)]
        );
        assert_eq!(conv.one_time.get("pad"), Some(&ots.0));

        std::fs::write(&ots.0, "#1\n\n").unwrap();
        let msg = cfg.to_config(Path::new("k")).unwrap_err().to_string();
        assert!(
            msg.starts_with("knockd.conf:2: [pad] one_time_sequences"),
            "{msg}"
        );
        assert!(msg.contains("no unused sequence"), "{msg}");

        std::fs::write(&ots.0, " 1\n 2x\n").unwrap();
        let msg = cfg.to_config(Path::new("k")).unwrap_err().to_string();
        assert!(msg.starts_with("knockd.conf:2: [pad]"), "{msg}");
        assert!(msg.contains(&format!("{}:2:", ots.0.display())), "{msg}");
        assert!(msg.contains("\"2x\""), "{msg}");
    }

    #[test]
    fn toml_output_explains_the_mapping() {
        let toml = parse_str(DEBIAN).unwrap().to_sesame_toml();
        assert!(toml.contains("[door.openSSH]"), "{toml}");
        assert!(
            toml.contains("sequence = [\"7000\", \"8000\", \"9000\"]"),
            "{toml}"
        );
        assert!(toml.contains("syslog = true"), "{toml}");
        assert!(toml.contains("tcp_flags = \"syn\""), "{toml}");
        assert!(toml.contains("open_for = 10"), "{toml}");
        assert!(toml.contains("on_open_shell = "), "{toml}");
        assert!(toml.contains("doubled knock"), "{toml}");
        assert!(toml.contains("extends"), "{toml}");
        assert!(toml.contains("timer"), "{toml}");
    }

    /// The printed TOML must load back into the same configuration.
    #[test]
    fn toml_output_parses_back_to_the_same_config() {
        let rich = "\
[options]
UseSyslog
LogFile = /var/log/knockd.log
PidFile = /run/knockd.pid
Interface = eth0, wg0

[open SSH]
Sequence = 7000,8000:udp,9000
Seq_Timeout = 5
TCPFlags = syn,!ack
Start_Command = /usr/sbin/nft add element inet f allow { %IP% } && echo \"it's open\" \\o/
Start_Command_6 =
Stop_Command = logger 'closed %IP%'
Stop_Command_6 = logger v6 closed %IP%
Cmd_Timeout = 30
Target = 2001:db8::1

[v6only]
Sequence = 1
Command_6 = echo %IP%

[dotted.name]
Sequence = 2:udp
Command = echo %IP%
";
        for text in [DEBIAN, rich] {
            let knockd = parse_str(text).unwrap();
            let toml = knockd.to_sesame_toml();
            let path = Path::new("imported.toml");
            let expected = knockd.to_config(path).unwrap();
            let parsed =
                crate::parse(&toml, path).unwrap_or_else(|e| panic!("{e}\n--- output ---\n{toml}"));
            assert_eq!(parsed, expected, "\n--- output ---\n{toml}");
        }

        let ots = TempFile::new("roundtrip-ots", "#1\n 3000:udp, 4000\n");
        let knockd = parse_str(&format!(
            "[pad]\nOne_Time_Sequences = {}\nCommand = x\n",
            ots.0.display()
        ))
        .unwrap();
        let toml = knockd.to_sesame_toml();
        let path = Path::new("imported.toml");
        let parsed =
            crate::parse(&toml, path).unwrap_or_else(|e| panic!("{e}\n--- output ---\n{toml}"));
        assert_eq!(parsed, knockd.to_config(path).unwrap(), "{toml}");
    }
}
