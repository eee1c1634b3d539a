//! From the raw TOML ([`crate::schema`]) to a validated [`crate::Config`]:
//! every error located by file, line and item.

mod door;
mod fleet;
mod fwknop;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use sesame_core::door::{CommandTemplate, Commands};
use sesame_core::{Door, DoorError, Guard, PortRange, Proto};
use toml::Spanned;

use crate::model::*;
use sesame_client::located::Located;

use crate::schema::*;

/// The text being parsed, for locating errors.
pub(crate) struct Ctx<'a> {
    pub(crate) text: &'a str,
    pub(crate) path: String,
}

impl Ctx<'_> {
    pub(crate) fn position(&self, span: Range<usize>) -> (usize, usize) {
        let offset = span.start.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    pub(crate) fn invalid(
        &self,
        span: Range<usize>,
        item: String,
        message: impl ToString,
    ) -> ConfigError {
        let (line, column) = self.position(span);
        ConfigError::from(Located {
            path: self.path.clone(),
            line,
            column: Some(column),
            item,
            message: message.to_string(),
        })
    }

    /// Span of `item` inside the value at `within`, so errors point at the
    /// element itself; falls back to the whole value.
    pub(crate) fn item_span(&self, within: &Range<usize>, item: &str) -> Range<usize> {
        let value = self.text.get(within.clone()).unwrap_or_default();
        match (item.is_empty(), value.find(item)) {
            (false, Some(at)) => within.start + at..within.start + at + item.len(),
            _ => within.clone(),
        }
    }

    pub(crate) fn daemon(&self, raw: RawDaemon) -> Result<DaemonSettings, ConfigError> {
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
        if let Some(dir) = raw.state_dir {
            out.state_dir = PathBuf::from(dir);
        }
        out.server_key = raw.server_key.map(PathBuf::from);
        if let Some(user) = raw.user {
            if !valid_user_name(user.get_ref()) {
                return Err(self.invalid(
                    user.span(),
                    format!("daemon.user {:?}", user.get_ref()),
                    "expected a user name (letters, digits, '_', '-', '.'; at most 32)",
                ));
            }
            out.user = Some(user.into_inner());
        }
        out.audit_log = raw.audit_log.map(PathBuf::from);
        if let Some(path) = raw.control_socket {
            out.control_socket = PathBuf::from(path);
        }
        if let Some(group) = raw.control_group {
            let ok = !group.get_ref().is_empty()
                && group
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if !ok {
                return Err(self.invalid(
                    group.span(),
                    format!("daemon.control_group {:?}", group.get_ref()),
                    "expected a group name",
                ));
            }
            out.control_group = Some(group.into_inner());
        }
        if let Some(addr) = raw.metrics {
            out.metrics = Some(addr.get_ref().parse().map_err(|_| {
                self.invalid(
                    addr.span(),
                    format!("daemon.metrics {:?}", addr.get_ref()),
                    "expected ADDRESS:PORT, e.g. \"127.0.0.1:9751\"",
                )
            })?);
        }
        out.pid_file = raw.pid_file.map(PathBuf::from);
        out.syslog = raw.syslog;
        if let Some(owned) = raw.owned_table {
            out.owned_table = owned;
        }
        out.syslog_socket = raw.syslog_socket.map(PathBuf::from);
        if let Some(n) = raw.ban_after {
            out.ban.max_failures = u32::try_from(*n.get_ref())
                .ok()
                .filter(|n| *n <= 1000)
                .ok_or_else(|| {
                    self.invalid(
                        n.span(),
                        format!("daemon.ban_after {}", n.get_ref()),
                        "expected a number of failures from 0 (never ban) to 1000",
                    )
                })?;
        }
        out.ban.window = self.duration("daemon", "ban_window", raw.ban_window, out.ban.window)?;
        out.ban.ban_for = self.duration("daemon", "ban_for", raw.ban_for, out.ban.ban_for)?;
        for (key, field, width, target) in [
            (
                "ban_prefix_v4",
                raw.ban_prefix_v4,
                32,
                &mut out.ban.v4_prefix,
            ),
            (
                "ban_prefix_v6",
                raw.ban_prefix_v6,
                128,
                &mut out.ban.v6_prefix,
            ),
        ] {
            if let Some(v) = field {
                *target = u8::try_from(*v.get_ref())
                    .ok()
                    .filter(|n| (1..=width).contains(n))
                    .ok_or_else(|| {
                        self.invalid(
                            v.span(),
                            format!("daemon.{key} {}", v.get_ref()),
                            format!("expected a prefix length from 1 to {width}"),
                        )
                    })?;
            }
        }
        for (key, field, target) in [
            (
                "spa_pk_rate",
                raw.spa_pk_rate,
                &mut out.spa_pk_rate.per_second,
            ),
            ("spa_pk_burst", raw.spa_pk_burst, &mut out.spa_pk_rate.burst),
        ] {
            if let Some(v) = field {
                *target = u32::try_from(*v.get_ref())
                    .ok()
                    .filter(|n| *n <= 1_000_000)
                    .ok_or_else(|| {
                        self.invalid(
                            v.span(),
                            format!("daemon.{key} {}", v.get_ref()),
                            "expected a number from 0 (no limit) to 1000000",
                        )
                    })?;
            }
        }
        out.spa_pk_rate.v4_prefix = out.ban.v4_prefix;
        out.spa_pk_rate.v6_prefix = out.ban.v6_prefix;
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

    /// A door's `guard`: plain doors default to [`Guard::Auto`]; a TOTP
    /// door's range is always its guard; SPA doors have none.
    pub(crate) fn guard(
        &self,
        label: &str,
        raw: Option<Spanned<toml::Value>>,
        kind: Option<&DoorKind>,
    ) -> Result<Guard, ConfigError> {
        let fixed = match kind {
            None => None,
            Some(DoorKind::Totp(t)) => Some(Guard::Ranges(vec![PortRange {
                proto: t.proto,
                first: *t.ports.start(),
                last: *t.ports.end(),
            }])),
            Some(DoorKind::Spa(_) | DoorKind::Fwknop(_)) => Some(Guard::None),
        };
        let Some(raw) = raw else {
            return Ok(fixed.unwrap_or(Guard::Auto));
        };
        let span = raw.span();
        if fixed.is_some() {
            return Err(self.invalid(
                span,
                format!("{label} guard"),
                "guard is for sequence doors: a TOTP door's whole range is its guard, and SPA doors need none",
            ));
        }
        let items: Vec<String> = match raw.into_inner() {
            toml::Value::String(s) if s.trim() == "auto" => return Ok(Guard::Auto),
            toml::Value::String(s) if s.trim() == "none" => return Ok(Guard::None),
            toml::Value::String(s) => s.split(',').map(|i| i.trim().to_string()).collect(),
            toml::Value::Array(values) => values
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            other => {
                return Err(self.invalid(
                    span,
                    format!("{label} guard"),
                    format!(
                        "expected \"auto\", \"none\" or a list of port ranges such as [\"7000-7255\", \"8000-8255:udp\"], found {}",
                        other.type_str()
                    ),
                ))
            }
        };
        let mut ranges = Vec::with_capacity(items.len());
        for (i, text) in items.iter().enumerate() {
            let range: PortRange = text.parse().map_err(|e: DoorError| {
                self.invalid(
                    self.item_span(&span, text),
                    format!("{label} guard[{i}] {text:?}"),
                    e,
                )
            })?;
            ranges.push(range);
        }
        Ok(Guard::Ranges(ranges))
    }

    /// A UDP port from 1 to 65535, for `key` of `label`.
    pub(crate) fn udp_port(
        &self,
        label: &str,
        key: &str,
        port: &toml::Spanned<i64>,
    ) -> Result<u16, ConfigError> {
        u16::try_from(*port.get_ref())
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                self.invalid(
                    port.span(),
                    format!("{label} {key} {}", port.get_ref()),
                    "expected a UDP port from 1 to 65535",
                )
            })
    }

    /// A positive duration: integer seconds or a humantime string.
    pub(crate) fn duration(
        &self,
        label: &str,
        key: &str,
        raw: Option<Spanned<RawDuration>>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
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
    }

    /// Byte offset of the start of 1-based `line`.
    pub(crate) fn line_start(&self, line: usize) -> usize {
        if line <= 1 {
            return 0;
        }
        self.text
            .match_indices('\n')
            .nth(line - 2)
            .map_or(self.text.len(), |(i, _)| i + 1)
    }

    /// Builds one event's commands from its argv keys (`on_open`,
    /// `on_open_v6`) or shell keys (`on_open_shell`, `on_open_shell_v6`). The
    /// plain key sets both families; the `_v6` key overrides IPv6, and an
    /// empty `_v6` value disables it (knockd's `Start_Command_6`).
    pub(crate) fn commands(
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
    pub(crate) fn check_cross_door(
        &self,
        doors: &[Door],
        kinds: &BTreeMap<String, DoorKind>,
    ) -> Result<(), ConfigError> {
        // Knock packets are dropped, so a knock port that is also a protected
        // service would make the service unreachable even when granted.
        let protected: BTreeSet<(Proto, u16)> = doors
            .iter()
            .flat_map(|d| d.services.iter().map(|s| (s.proto, s.port)))
            .collect();
        for door in doors {
            for knock in observed_knocks(door, kinds.get(&door.name)) {
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
