//! fwknop doors written in Sesame's TOML: port, age and stanzas.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use sesame_core::fwknop::{DigestType, EncMode};
use sesame_core::Door;
use toml::Spanned;

use super::Ctx;
use crate::model::*;
use crate::schema::*;

impl Ctx<'_> {
    /// Reads an fwknop door (`fwknop_port`, `fwknop_max_age`, `stanzas`).
    /// Stanzas without `open_ports` get the door's `protect` list later, in
    /// [`Ctx::fwknop_services`].
    pub(crate) fn fwknop_kind(
        &self,
        label: &str,
        door_span: &Range<usize>,
        port: Spanned<i64>,
        users: BTreeMap<String, Spanned<RawUser>>,
        raw: &mut RawDoor,
    ) -> Result<(Range<usize>, Vec<String>, DoorKind), ConfigError> {
        use crate::import::fwknop::values as fk;
        let span = port.span();
        if let Some((user, u)) = users.iter().next() {
            return Err(self.invalid(
                u.span(),
                format!("{label} users.{user}"),
                "an fwknop door has no users: each [[door.NAME.stanzas]] holds its own keys",
            ));
        }
        let port_num = self.udp_port(label, "fwknop_port", &port)?;
        let age_span = raw.fwknop_max_age.as_ref().map(Spanned::span);
        let max_age = self.duration(
            label,
            "fwknop_max_age",
            raw.fwknop_max_age.take(),
            fk::DEFAULT_MAX_AGE,
        )?;
        if max_age > Duration::from_secs(fk::MAX_PACKET_AGE_SECS) {
            return Err(self.invalid(
                age_span.unwrap_or(span.clone()),
                format!("{label} fwknop_max_age"),
                format!(
                    "at most {} seconds (as in fwknopd)",
                    fk::MAX_PACKET_AGE_SECS
                ),
            ));
        }
        let raw_stanzas = std::mem::take(&mut raw.stanzas);
        if raw_stanzas.is_empty() {
            return Err(self.invalid(
                door_span.clone(),
                format!("{label} stanzas"),
                "an fwknop door needs at least one [[door.NAME.stanzas]] (access.conf's SOURCE stanzas)",
            ));
        }
        let mut stanzas = Vec::with_capacity(raw_stanzas.len());
        for (i, st) in raw_stanzas.into_iter().enumerate() {
            stanzas.push(self.fwknop_stanza(label, i, st)?);
        }
        let flag = |v: Option<Spanned<bool>>| v.is_some_and(|v| *v.get_ref());
        let forwarding = flag(raw.nat_forwarding.take());
        let local = flag(raw.nat_local.take());
        let hosts = match raw.nat_hosts.take() {
            None => Vec::new(),
            Some(list) => {
                if list.get_ref().iter().any(|h| h.eq_ignore_ascii_case("any")) {
                    return Err(self.invalid(
                        list.span(),
                        format!("{label} nat_hosts"),
                        "ANY is not allowed: list the inner networks NAT requests may name (0.0.0.0/0 if you mean every IPv4 address)",
                    ));
                }
                fk::parse_source(&list.get_ref().join(","))
                    .map_err(|e| self.invalid(list.span(), format!("{label} nat_hosts"), e))?
            }
        };
        if !forwarding {
            if let Some(s) = stanzas.iter().position(|s| s.force_nat.is_some()) {
                return Err(self.invalid(
                    span,
                    format!("{label} stanzas[{s}] force_nat"),
                    "force_nat needs nat_forwarding = true on the door (ENABLE_IPT_FORWARDING)",
                ));
            }
        }
        Ok((
            span,
            vec![format!("{port_num}:udp")],
            DoorKind::Fwknop(fk::FwknopDoor {
                port: port_num,
                max_age,
                stanzas,
                nat: fk::FwknopNat {
                    forwarding,
                    local,
                    hosts,
                },
            }),
        ))
    }

    /// Reads one `[[door.NAME.stanzas]]`.
    pub(crate) fn fwknop_stanza(
        &self,
        label: &str,
        index: usize,
        raw: Spanned<RawStanza>,
    ) -> Result<sesame_core::fwknop::stanza::FwknopStanza, ConfigError> {
        use crate::import::fwknop::values as fk;
        let stanza_span = raw.span();
        let (line, _) = self.position(stanza_span.clone());
        let raw = raw.into_inner();
        let label = format!("{label} stanzas[{index}]");
        let bad = |span: Range<usize>, key: &str, message: String| {
            self.invalid(span, format!("{label} {key}"), message)
        };
        if raw.source.get_ref().is_empty() {
            return Err(bad(
                raw.source.span(),
                "source",
                "empty; use [\"ANY\"] or list addresses and networks".into(),
            ));
        }
        let source = fk::parse_source(&raw.source.get_ref().join(","))
            .map_err(|e| bad(raw.source.span(), "source", e))?;
        let destination = match &raw.destination {
            None => Vec::new(),
            Some(d) => fk::parse_source(&d.get_ref().join(","))
                .map_err(|e| bad(d.span(), "destination", e))?,
        };
        let open_ports = match &raw.open_ports {
            None => Vec::new(),
            Some(list) if list.get_ref().is_empty() => {
                return Err(bad(
                    list.span(),
                    "open_ports",
                    "empty; leave it out to allow every service of the door's protect list".into(),
                ))
            }
            Some(list) => {
                let mut out = Vec::new();
                for item in list.get_ref() {
                    let s = fk::parse_port_item(item)
                        .map_err(|e| bad(self.item_span(&list.span(), item), "open_ports", e))?;
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
                out
            }
        };
        let mut restrict_ports = Vec::new();
        for item in &raw.restrict_ports {
            let s = fk::parse_port_item(item.get_ref())
                .map_err(|e| bad(item.span(), "restrict_ports", e))?;
            if !restrict_ports.contains(&s) {
                restrict_ports.push(s);
            }
        }
        let secret = |plain: Option<Spanned<String>>,
                      b64: Option<Spanned<String>>,
                      name: &str|
         -> Result<Option<fk::Secret>, ConfigError> {
            match (plain, b64) {
                (Some(_), Some(b)) => Err(bad(
                    b.span(),
                    &format!("{name}_base64"),
                    format!("give either {name} or {name}_base64, not both"),
                )),
                (Some(p), None) => Ok(Some(fk::Secret(p.into_inner().into_bytes()))),
                (None, Some(b)) => fk::decode_key_base64(b.get_ref())
                    .map(|v| Some(fk::Secret(v)))
                    .map_err(|e| bad(b.span(), &format!("{name}_base64"), e)),
                (None, None) => Ok(None),
            }
        };
        let key = secret(raw.key, raw.key_base64, "key")?.ok_or_else(|| {
            bad(
                stanza_span.clone(),
                "key",
                "missing: give key (the passphrase) or key_base64".into(),
            )
        })?;
        let hmac_key = secret(raw.hmac_key, raw.hmac_key_base64, "hmac_key")?;
        let hmac_digest = match &raw.hmac_digest {
            None => DigestType::Sha256,
            Some(d) => {
                fk::parse_hmac_digest(d.get_ref()).map_err(|e| bad(d.span(), "hmac_digest", e))?
            }
        };
        let encryption_mode = match &raw.encryption_mode {
            None => EncMode::Cbc,
            Some(m) => fk::parse_encryption_mode(m.get_ref())
                .map_err(|e| bad(m.span(), "encryption_mode", e))?,
        };
        let access_timeout = self.duration(
            &label,
            "access_timeout",
            raw.access_timeout,
            fk::DEFAULT_ACCESS_TIMEOUT,
        )?;
        let max_timeout = match raw.max_timeout {
            None => None,
            Some(m) => Some(self.duration(&label, "max_timeout", Some(m), Duration::ZERO)?),
        };
        let access_expire = match raw.access_expire {
            None => None,
            Some(t) => Some(u64::try_from(*t.get_ref()).map_err(|_| {
                bad(
                    t.span(),
                    "access_expire",
                    "expected Unix seconds (0 or more)".into(),
                )
            })?),
        };
        let name =
            |v: Option<Spanned<String>>, what: &str| -> Result<Option<String>, ConfigError> {
                match v {
                    None => Ok(None),
                    Some(v) if valid_user_name(v.get_ref()) => Ok(Some(v.into_inner())),
                    Some(v) => Err(bad(v.span(), what, "expected a user or group name".into())),
                }
            };
        let force_nat =
            match raw.force_nat {
                None => None,
                Some(f) => Some(f.get_ref().trim().parse::<std::net::SocketAddr>().map_err(
                    |_| {
                        bad(
                            f.span(),
                            "force_nat",
                            format!("{:?}: expected ADDR:PORT or [IPv6]:PORT", f.get_ref()),
                        )
                    },
                )?),
            };
        let cmd_exec_user = name(raw.cmd_exec_user, "cmd_exec_user")?;
        let cmd_exec_group = name(raw.cmd_exec_group, "cmd_exec_group")?;
        Ok(fk::FwknopStanza {
            line,
            source,
            open_ports,
            restrict_ports,
            key,
            hmac_key,
            hmac_digest,
            encryption_mode,
            access_timeout,
            max_timeout,
            require_username: raw.require_username.map(Spanned::into_inner),
            require_source_address: raw.require_source_address,
            enable_cmd_exec: raw.enable_cmd_exec,
            cmd_exec_user,
            cmd_exec_group,
            destination,
            access_expire,
            force_nat,
            disable_dnat: raw.disable_dnat,
            force_masquerade: raw.force_masquerade,
        })
    }

    /// Gives stanzas without `open_ports` the door's `protect` list, checks
    /// the others stay within it, and checks every stanza.
    pub(crate) fn fwknop_services(
        &self,
        label: &str,
        span: &Range<usize>,
        door: &Door,
        f: &mut sesame_core::fwknop::stanza::FwknopDoor,
    ) -> Result<(), ConfigError> {
        if door.services.is_empty() {
            return Err(self.invalid(
                span.clone(),
                format!("{label} fwknop_port"),
                "an fwknop door needs protect = [...]: the services its stanzas may open",
            ));
        }
        for (i, st) in f.stanzas.iter_mut().enumerate() {
            let at = self.line_start(st.line);
            if st.open_ports.is_empty() {
                st.open_ports = door.services.clone();
            } else if let Some(extra) = st.open_ports.iter().find(|s| !door.services.contains(s)) {
                return Err(self.invalid(
                    at..at,
                    format!("{label} stanzas[{i}] open_ports {extra}"),
                    "not among the door's protect list",
                ));
            }
            crate::import::fwknop::values::check_stanza(st)
                .map_err(|e| self.invalid(at..at, format!("{label} stanzas[{i}]"), e))?;
        }
        Ok(())
    }
}
