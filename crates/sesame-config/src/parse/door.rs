//! A door's common settings and its type ("exactly one of" the ways to
//! open it).

use std::ops::Range;
use std::path::PathBuf;

use sesame_core::{Door, DoorError, Knock, Proto, Service, TcpFlags};
use toml::Spanned;

use super::Ctx;
use std::net::IpAddr;

use crate::model::*;
use crate::schema::*;

impl Ctx<'_> {
    pub(crate) fn door(
        &self,
        name: String,
        raw: Spanned<RawDoor>,
    ) -> Result<(Door, Option<PathBuf>, Option<DoorKind>), ConfigError> {
        let door_span = raw.span();
        let mut raw = raw.into_inner();
        let label = format!("door {name:?}");

        let users_given = !raw.users.is_empty();
        let special = self.special_kind(&label, &door_span, &mut raw)?;
        let (seq_span, items, one_time) = match (raw.sequence, raw.one_time_sequences) {
            _ if special.is_some() => {
                let (span, items, _) = special.as_ref().expect("checked");
                (span.clone(), items.clone(), None)
            }
            _ if users_given => {
                return Err(self.invalid(
                    door_span,
                    format!("{label} users"),
                    "users are only for SPA (spa_port) and TOTP (totp_ports) doors",
                ))
            }
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

        let seq_timeout =
            self.duration(&label, "seq_timeout", raw.seq_timeout, DEFAULT_SEQ_TIMEOUT)?;
        let open_for_given = raw.open_for.is_some();
        let open_for = self.duration(&label, "open_for", raw.open_for, DEFAULT_OPEN_FOR)?;

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

        // Gateway mode: each list's items in one syntax check, named by
        // list and index.
        let mut forwards = Vec::new();
        for (key, list, kind) in [
            (
                "forward",
                &raw.forward,
                "DNAT, as \"tcp/2222 -> 10.2.0.2:22\"",
            ),
            (
                "route",
                &raw.route,
                "a routed inner service, as \"tcp/10.2.0.2:22\"",
            ),
            (
                "redirect",
                &raw.redirect,
                "a local redirect, as \"tcp/2222 -> 22\"",
            ),
        ] {
            for (i, f) in list.iter().enumerate() {
                let item = format!("{label} {key}[{i}] {:?}", f.get_ref());
                let forward: sesame_core::Forward = f
                    .get_ref()
                    .parse()
                    .map_err(|e: DoorError| self.invalid(f.span(), item.clone(), e))?;
                let right_kind = matches!(
                    (key, &forward),
                    ("forward", sesame_core::Forward::Dnat { .. })
                        | ("route", sesame_core::Forward::Route { .. })
                        | ("redirect", sesame_core::Forward::Redirect { .. })
                );
                if !right_kind {
                    return Err(self.invalid(f.span(), item, format!("{key} takes {kind}")));
                }
                if !forwards.contains(&forward) {
                    forwards.push(forward);
                }
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

        let guard = self.guard(&label, raw.guard, special.as_ref().map(|(_, _, k)| k))?;
        let mut door = Door {
            name: name.clone(),
            sequence,
            seq_timeout,
            open_for,
            tcp_flags,
            services,
            target,
            on_open,
            on_close,
            guard,
            forwards,
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
        let kind = match special {
            None => None,
            Some((span, _, mut kind)) => {
                if let DoorKind::Spa(spa) = &mut kind {
                    if door.services.is_empty() {
                        return Err(self.invalid(
                            span,
                            format!("{label} spa_port"),
                            "an SPA door needs protect = [...]: the services its users may open",
                        ));
                    }
                    for user in &mut spa.users {
                        if user.services.is_empty() {
                            user.services = door.services.clone();
                        } else if let Some(extra) =
                            user.services.iter().find(|s| !door.services.contains(s))
                        {
                            return Err(self.invalid(
                                span.clone(),
                                format!("{label} users.{} services {extra}", user.name),
                                "not among the door's protect list",
                            ));
                        }
                    }
                }
                if let DoorKind::Fwknop(f) = &mut kind {
                    self.fwknop_services(&label, &span, &door, f)?;
                    if !open_for_given {
                        door.open_for = f.longest_grant();
                    }
                }
                Some(kind)
            }
        };
        Ok((door, one_time, kind))
    }

    /// Reads the SPA/TOTP keys of a door. Returns the span and placeholder
    /// sequence items used for the core door, and the kind.
    #[allow(clippy::type_complexity)]
    pub(crate) fn special_kind(
        &self,
        label: &str,
        door_span: &Range<usize>,
        raw: &mut RawDoor,
    ) -> Result<Option<(Range<usize>, Vec<String>, DoorKind)>, ConfigError> {
        let spa = raw.spa_port.take();
        let totp = raw.totp_ports.take();
        let fwknop = raw.fwknop_port.take();
        let exclusive = |span: Range<usize>, key: &str| {
            self.invalid(
                span,
                format!("{label} {key}"),
                "a door is exactly one of: sequence, one_time_sequences, spa_port, totp_ports, fwknop_port",
            )
        };
        if fwknop.is_none() {
            for (key, given) in [
                ("fwknop_max_age", raw.fwknop_max_age.is_some()),
                ("stanzas", !raw.stanzas.is_empty()),
                ("nat_forwarding", raw.nat_forwarding.is_some()),
                ("nat_local", raw.nat_local.is_some()),
                ("nat_hosts", raw.nat_hosts.is_some()),
            ] {
                if given {
                    return Err(self.invalid(
                        door_span.clone(),
                        format!("{label} {key}"),
                        "only valid with fwknop_port",
                    ));
                }
            }
        }
        if spa.is_none() {
            for (key, given) in [
                ("spa_window", raw.spa_window.is_some()),
                ("spa_accept_v1", raw.spa_accept_v1.is_some()),
                ("roaming", raw.roaming.is_some()),
            ] {
                if given {
                    return Err(self.invalid(
                        door_span.clone(),
                        format!("{label} {key}"),
                        "only valid with spa_port",
                    ));
                }
            }
        }
        if totp.is_none() {
            for (key, given) in [
                ("totp_length", raw.totp_length.is_some()),
                ("totp_period", raw.totp_period.is_some()),
                ("totp_proto", raw.totp_proto.is_some()),
            ] {
                if given {
                    return Err(self.invalid(
                        door_span.clone(),
                        format!("{label} {key}"),
                        "only valid with totp_ports",
                    ));
                }
            }
        }
        let users = std::mem::take(&mut raw.users);
        if let Some(port) = fwknop {
            for (key, span) in [
                ("spa_port", spa.as_ref().map(Spanned::span)),
                ("totp_ports", totp.as_ref().map(Spanned::span)),
                ("sequence", raw.sequence.as_ref().map(Spanned::span)),
                (
                    "one_time_sequences",
                    raw.one_time_sequences.as_ref().map(Spanned::span),
                ),
            ] {
                if let Some(span) = span {
                    return Err(exclusive(span, key));
                }
            }
            return self
                .fwknop_kind(label, door_span, port, users, raw)
                .map(Some);
        }
        if let Some(port) = spa {
            if let Some(t) = &totp {
                return Err(exclusive(t.span(), "totp_ports"));
            }
            if let Some(s) = &raw.sequence {
                return Err(exclusive(s.span(), "sequence"));
            }
            if let Some(s) = &raw.one_time_sequences {
                return Err(exclusive(s.span(), "one_time_sequences"));
            }
            let span = port.span();
            let port_num = self.udp_port(label, "spa_port", &port)?;
            let window = self.duration(
                label,
                "spa_window",
                raw.spa_window.take(),
                DEFAULT_SPA_WINDOW,
            )?;
            if users.is_empty() {
                return Err(self.invalid(
                    span,
                    format!("{label} users"),
                    "an SPA door needs at least one [door.NAME.users.USER] with key or identity",
                ));
            }
            let mut out = Vec::new();
            for (user, raw_user) in users {
                let uspan = raw_user.span();
                let u = raw_user.into_inner();
                let ulabel = format!("{label} users.{user}");
                let credential = match (u.key, u.identity, u.totp_secret) {
                    (Some(k), None, None) => CredentialSource::SymmetricKeyFile(PathBuf::from(k)),
                    (None, Some(i), None) => CredentialSource::Identity(i),
                    _ => {
                        return Err(self.invalid(uspan, ulabel, "give exactly one of key (symmetric key file) or identity (Ed25519 public key)"))
                    }
                };
                let previous_source = match (u.previous_key, u.previous_identity) {
                    (Some(_), Some(_)) => {
                        return Err(self.invalid(
                            uspan,
                            format!("{ulabel} previous_key"),
                            "give one of previous_key or previous_identity, not both",
                        ))
                    }
                    (Some(k), None) => Some(CredentialSource::SymmetricKeyFile(PathBuf::from(k))),
                    (None, Some(i)) => Some(CredentialSource::Identity(i)),
                    (None, None) => None,
                };
                let previous = match (previous_source, u.previous_until) {
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(self.invalid(uspan, format!("{ulabel} previous_until"), "a previous key needs previous_until: when the rotation's grace period ends, as \"2026-12-31T00:00:00Z\""))
                    }
                    (None, Some(until)) => {
                        return Err(self.invalid(until.span(), format!("{ulabel} previous_until"), "only valid with previous_key or previous_identity"))
                    }
                    (Some(source), Some(until)) => {
                        let at = humantime::parse_rfc3339(until.get_ref().trim())
                            .ok()
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .ok_or_else(|| {
                                self.invalid(
                                    until.span(),
                                    format!("{ulabel} previous_until {:?}", until.get_ref()),
                                    "expected an RFC 3339 UTC time such as \"2026-12-31T00:00:00Z\"",
                                )
                            })?;
                        Some((source, at.as_secs()))
                    }
                };
                let mut services = Vec::new();
                for (i, sv) in u.services.iter().enumerate() {
                    let service: Service = sv.get_ref().parse().map_err(|e: DoorError| {
                        self.invalid(
                            sv.span(),
                            format!("{ulabel} services[{i}] {:?}", sv.get_ref()),
                            e,
                        )
                    })?;
                    services.push(service);
                }
                out.push(SpaUser {
                    name: user,
                    credential,
                    services,
                    allow_address: u.allow_address,
                    previous,
                });
            }
            return Ok(Some((
                span,
                vec![format!("{port_num}:udp")],
                DoorKind::Spa(SpaDoor {
                    port: port_num,
                    window,
                    users: out,
                    accept_v1: raw.spa_accept_v1.take().is_some_and(|v| *v.get_ref()),
                    roaming: raw.roaming.take().is_some_and(|v| *v.get_ref()),
                }),
            )));
        }
        let Some(ports) = totp else {
            return Ok(None);
        };
        if let Some(s) = &raw.sequence {
            return Err(exclusive(s.span(), "sequence"));
        }
        if let Some(s) = &raw.one_time_sequences {
            return Err(exclusive(s.span(), "one_time_sequences"));
        }
        let span = ports.span();
        let bad_range = || {
            self.invalid(
                span.clone(),
                format!("{label} totp_ports {:?}", ports.get_ref()),
                "expected a port range such as \"20000-29999\"",
            )
        };
        let (lo, hi) = ports.get_ref().split_once('-').ok_or_else(bad_range)?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad_range())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad_range())?;
        let length = match raw.totp_length.take() {
            None => DEFAULT_TOTP_LENGTH,
            Some(l) => usize::try_from(*l.get_ref()).map_err(|_| {
                self.invalid(
                    l.span(),
                    format!("{label} totp_length {}", l.get_ref()),
                    "expected a positive integer",
                )
            })?,
        };
        let period = self.duration(
            label,
            "totp_period",
            raw.totp_period.take(),
            DEFAULT_TOTP_PERIOD,
        )?;
        let proto = match raw.totp_proto.take() {
            None => Proto::Tcp,
            Some(p) => p.get_ref().parse().map_err(|e: DoorError| {
                self.invalid(p.span(), format!("{label} totp_proto {:?}", p.get_ref()), e)
            })?,
        };
        let spec = sesame_core::totp::TotpSpec {
            len: length,
            ports: lo..=hi,
            proto,
            period: period.as_secs(),
        };
        spec.validate()
            .map_err(|e| self.invalid(span.clone(), format!("{label} totp_ports"), e))?;
        if period.subsec_nanos() != 0 {
            return Err(self.invalid(
                span,
                format!("{label} totp_period"),
                "must be whole seconds",
            ));
        }
        if users.is_empty() {
            return Err(self.invalid(
                span,
                format!("{label} users"),
                "a TOTP door needs at least one [door.NAME.users.USER] with totp_secret",
            ));
        }
        let mut out = Vec::new();
        for (user, raw_user) in users {
            let uspan = raw_user.span();
            let u = raw_user.into_inner();
            match (
                u.totp_secret,
                u.key.is_some()
                    || u.identity.is_some()
                    || !u.services.is_empty()
                    || u.allow_address,
            ) {
                (Some(secret), false) => out.push((user, PathBuf::from(secret))),
                _ => {
                    return Err(self.invalid(
                        uspan,
                        format!("{label} users.{user}"),
                        "a TOTP user has exactly one key: totp_secret",
                    ))
                }
            }
        }
        Ok(Some((
            span,
            vec![format!("{lo}:{proto}")],
            DoorKind::Totp(TotpDoor {
                ports: lo..=hi,
                length,
                period,
                proto,
                users: out,
            }),
        )))
    }
}
