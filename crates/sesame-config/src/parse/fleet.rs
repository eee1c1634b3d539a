//! `[fleet]` and the doors' `fleet` key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sesame_core::fleet::{valid_name, DoorFleet, StoreDown, Targets};
use toml::Spanned;

use super::Ctx;
use crate::model::*;
use crate::schema::*;

/// Longest `timeout` a spend may wait: a knock that waits longer than
/// this is better refused.
const MAX_TIMEOUT: Duration = Duration::from_secs(5);

impl Ctx<'_> {
    /// Validates `[fleet]`.
    pub(crate) fn fleet(&self, raw: Spanned<RawFleet>) -> Result<FleetSettings, ConfigError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let name_of = |v: Spanned<String>, key: &str| {
            let s = v.span();
            let v = v.into_inner();
            match valid_name(&v) {
                true => Ok(v),
                false => Err(self.invalid(
                    s,
                    format!("fleet {key} {v:?}"),
                    "must be 1 to 64 of A-Z a-z 0-9 . _ -",
                )),
            }
        };
        let name = name_of(raw.name, "name")?;
        let group = name_of(raw.group, "group")?;
        let redis_span = raw.redis.span();
        let redis = raw.redis.into_inner();
        let scheme = redis.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("redis") | Some("unix") | Some("redis+unix") => {}
            Some("rediss") => {
                return Err(self.invalid(
                    redis_span,
                    format!("fleet redis {redis:?}"),
                    "TLS (rediss://) is not supported: it would bring a second crypto stack. Reach Redis over a private network or a WireGuard link (entries are signed end to end; see SECURITY.md)",
                ))
            }
            _ => {
                return Err(self.invalid(
                    redis_span,
                    format!("fleet redis {redis:?}"),
                    "must be redis://HOST:PORT[/DB] or unix:///PATH",
                ))
            }
        }
        if redis.contains('@') {
            return Err(self.invalid(
                redis_span,
                format!("fleet redis {redis:?}"),
                "put no credentials in the URL (the config is readable): use user and password_file",
            ));
        }
        let user = raw
            .user
            .map(|u| {
                let s = u.span();
                let u = u.into_inner();
                match !u.is_empty() && u.chars().all(|c| c.is_ascii_graphic()) {
                    true => Ok(u),
                    false => Err(self.invalid(
                        s,
                        format!("fleet user {u:?}"),
                        "must be a non-empty ACL user name",
                    )),
                }
            })
            .transpose()?;
        let timeout = self.duration("fleet", "timeout", raw.timeout, DEFAULT_FLEET_TIMEOUT)?;
        if timeout > MAX_TIMEOUT {
            return Err(self.invalid(
                span.clone(),
                format!("fleet timeout {timeout:?}"),
                format!("must be at most {MAX_TIMEOUT:?}: a knock should not wait longer"),
            ));
        }
        let heartbeat =
            self.duration("fleet", "heartbeat", raw.heartbeat, DEFAULT_FLEET_HEARTBEAT)?;
        let catch_up = raw
            .catch_up
            .map(|c| self.duration("fleet", "catch_up", Some(c), Duration::ZERO))
            .transpose()?;
        let on_store_down = match raw.on_store_down {
            None => StoreDown::Deny,
            Some(v) => match v.get_ref().as_str() {
                "deny" => StoreDown::Deny,
                "local" => StoreDown::Local,
                other => {
                    return Err(self.invalid(
                        v.span(),
                        format!("fleet on_store_down {other:?}"),
                        "must be \"deny\" (refuse fleet doors while the store is down) or \"local\" (single use on this gateway only)",
                    ))
                }
            },
        };
        let mut members = BTreeMap::new();
        for (member, key) in raw.members {
            if !valid_name(&member) {
                return Err(self.invalid(
                    key.span(),
                    format!("fleet members {member:?}"),
                    "a gateway name must be 1 to 64 of A-Z a-z 0-9 . _ -",
                ));
            }
            members.insert(member, key.into_inner());
        }
        if !members.contains_key(&name) {
            return Err(self.invalid(
                span,
                "fleet members".to_string(),
                format!("must list this gateway ({name:?}) with its public key, like every other member"),
            ));
        }
        Ok(FleetSettings {
            name,
            group,
            redis,
            user,
            password_file: raw.password_file.map(PathBuf::from),
            key: PathBuf::from(raw.key),
            timeout,
            on_store_down,
            heartbeat,
            catch_up,
            members,
        })
    }

    /// Validates a door's `fleet` against `[fleet]`.
    pub(crate) fn door_fleet(
        &self,
        door: &str,
        raw: Spanned<RawDoorFleet>,
        fleet: Option<&FleetSettings>,
    ) -> Result<Option<DoorFleet>, ConfigError> {
        let span = raw.span();
        let label = format!("door {door:?} fleet");
        let open_on = match raw.into_inner() {
            RawDoorFleet::Spend(false) => return Ok(None),
            RawDoorFleet::Spend(true) => None,
            RawDoorFleet::Group(g) if g == "group" => Some(Targets::Group),
            RawDoorFleet::Group(other) => {
                return Err(self.invalid(
                    span,
                    format!("{label} {other:?}"),
                    "must be true, \"group\" or a list of gateway names",
                ))
            }
            RawDoorFleet::Members(list) => Some(Targets::Members(list)),
        };
        let Some(fleet) = fleet else {
            return Err(self.invalid(span, label, "needs a [fleet] section"));
        };
        if let Some(Targets::Members(list)) = &open_on {
            if list.is_empty() {
                return Err(self.invalid(span, label, "names no gateway"));
            }
            if let Some(unknown) = list.iter().find(|g| !fleet.members.contains_key(*g)) {
                return Err(self.invalid(
                    self.item_span(&span, unknown),
                    format!("{label} {unknown:?}"),
                    "is not a gateway of [fleet.members]",
                ));
            }
        }
        Ok(Some(DoorFleet { open_on }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sesame_core::fleet::{StoreDown, Targets};

    const FLEET: &str = "[fleet]\nname = \"gw-a\"\ngroup = \"edge\"\nredis = \"unix:///run/redis.sock\"\nkey = \"/etc/sesame/fleet.key\"\n[fleet.members]\ngw-a = \"/etc/sesame/gw-a.pub\"\ngw-b = \"/etc/sesame/gw-b.pub\"\n";
    const DOOR: &str = "[door.ssh]\nsequence = [\"7000\"]\nprotect = [\"tcp/22\"]\n";

    fn parse(text: &str) -> Result<crate::Config, crate::ConfigError> {
        crate::parse(text, Path::new("f.toml"))
    }

    #[test]
    fn fleet_settings_and_door_targets_parse_with_safe_defaults() {
        let cfg = parse(&format!("{DOOR}fleet = \"group\"\n{FLEET}")).unwrap();
        let f = cfg.fleet.unwrap();
        assert_eq!((f.name.as_str(), f.group.as_str()), ("gw-a", "edge"));
        assert_eq!(f.on_store_down, StoreDown::Deny, "fail closed by default");
        assert_eq!(f.timeout, crate::DEFAULT_FLEET_TIMEOUT);
        assert_eq!(cfg.fleet_doors["ssh"].open_on, Some(Targets::Group));
        let cfg = parse(&format!("{DOOR}fleet = [\"gw-b\"]\n{FLEET}")).unwrap();
        assert_eq!(
            cfg.fleet_doors["ssh"].open_on,
            Some(Targets::Members(vec!["gw-b".into()]))
        );
        let cfg = parse(&format!("{DOOR}fleet = true\n{FLEET}")).unwrap();
        assert_eq!(cfg.fleet_doors["ssh"].open_on, None);
        let cfg = parse(&format!("{DOOR}fleet = false\n{FLEET}")).unwrap();
        assert!(cfg.fleet_doors.is_empty());
    }

    #[test]
    fn bad_fleet_values_are_refused_by_name() {
        // The door and the valid [fleet] with one text replaced.
        let with = |from: &str, to: &str| format!("{DOOR}{FLEET}").replace(from, to);
        let members = "[fleet.members]";
        let socket = "unix:///run/redis.sock";
        for (text, needle) in [
            (
                format!("{DOOR}fleet = \"group\"\n"),
                "needs a [fleet] section",
            ),
            (format!("{DOOR}fleet = [\"gw-z\"]\n{FLEET}"), "\"gw-z\""),
            (format!("{DOOR}fleet = \"all\"\n{FLEET}"), "fleet \"all\""),
            (with(socket, "rediss://h:6379"), "TLS"),
            (with(socket, "redis://u:pw@h"), "credentials"),
            (
                with("name = \"gw-a\"", "name = \"gw a\""),
                "fleet name \"gw a\"",
            ),
            (
                with("name = \"gw-a\"", "name = \"gw-c\""),
                "must list this gateway",
            ),
            (
                with(members, "on_store_down = \"open\"\n[fleet.members]"),
                "on_store_down \"open\"",
            ),
            (
                with(members, "timeout = \"10s\"\n[fleet.members]"),
                "fleet timeout",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e}");
            assert!(e.starts_with("f.toml:"), "not located: {e}");
        }
    }

    #[test]
    fn the_documented_fleet_config_parses() {
        let doc = include_str!("../../../../docs/fleet.md");
        let block = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a toml block in docs/fleet.md");
        let cfg = parse(block).unwrap_or_else(|e| panic!("{e}"));
        let f = cfg.fleet.expect("[fleet]");
        assert_eq!(f.members.len(), 3);
        assert_eq!(cfg.fleet_doors.len(), 2);
    }
}
