//! Builds what the daemon runs from a config: each door with its type and
//! loaded keys ([`doors`]), the engine, the replay store, the one-time
//! files and the fleet's store. Start and reload share it.
//!
//! Key material is read here (at start-up and by `--check-config`), never
//! logged, and wiped on drop by the core types.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sesame_core::engine::{
    DoorKind, Engine, EngineDoor, FwknopDoor, LoadedStanza, Seeds, Settings, SpaDoor, TotpDoor,
};
use sesame_core::fwknop::FwknopKeys;
use sesame_core::replay::ReplayCache;
use sesame_core::spa::{Credential, UserPolicy, Verifier};
use sesame_core::totp::TotpSpec;
use sesame_core::Door;

use sesame_core::fleet::{FleetPolicy, Signers};
use sesame_fleet::{FleetConfig, RedisFleet};

use super::error::{AuthError, DaemonError};
use super::replay_file::PersistentReplay;
use crate::config::{Config, CredentialSource, DoorKind as ConfigKind, FleetSettings};
use crate::fwknop_conf::FwknopStanza;
use crate::keys;
use crate::one_time::OneTimeFile;

/// `CMD_EXEC_USER` / `CMD_EXEC_GROUP` as (uid, gid), looked up now so the
/// packet loop never reads the user database. Switching user needs root:
/// a daemon that runs unprivileged (`[daemon] user`, or started as a user,
/// as the packaged unit does) refuses the stanza.
fn command_identity(config: &Config, stanza: &FwknopStanza) -> Result<Option<(u32, u32)>, String> {
    if stanza.cmd_exec_user.is_none() && stanza.cmd_exec_group.is_none() {
        return Ok(None);
    }
    let me = nix::unistd::geteuid();
    if !me.is_root() || config.daemon.user.is_some() {
        return Err(format!(
            "CMD_EXEC_USER/CMD_EXEC_GROUP need sesamed to run as root (as fwknopd does); it runs as {}. Remove them (commands then run as sesamed's user) or run sesamed as root",
            config.daemon.user.clone().unwrap_or_else(|| format!("uid {me}"))
        ));
    }
    let (mut uid, mut gid) = (0, 0);
    if let Some(name) = &stanza.cmd_exec_user {
        let t = crate::privilege::lookup(name).map_err(|e| format!("CMD_EXEC_USER: {e}"))?;
        (uid, gid) = (t.uid.as_raw(), t.gid.as_raw());
    }
    if let Some(name) = &stanza.cmd_exec_group {
        let g = nix::unistd::Group::from_name(name)
            .map_err(|e| format!("CMD_EXEC_GROUP {name:?}: {e}"))?
            .ok_or_else(|| format!("CMD_EXEC_GROUP {name:?}: no such group"))?;
        gid = g.gid.as_raw();
    }
    Ok(Some((uid, gid)))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads every key the config names, without touching the firewall, and
/// gives each door its type with its keys loaded. `--check-config` runs
/// this too, so bad key files are found before a start.
pub fn doors(config: &Config) -> Result<Vec<EngineDoor>, AuthError> {
    let server = match &config.daemon.server_key {
        Some(path) => Some(keys::load_server_key(path).map_err(AuthError::ServerKey)?),
        None => None,
    };
    let mut out = Vec::with_capacity(config.doors.len());
    for door in &config.doors {
        let kind = match config.kinds.get(&door.name) {
            None if config.one_time.contains_key(&door.name) => DoorKind::OneTime,
            None => DoorKind::Sequence,
            Some(ConfigKind::Fwknop(f)) => DoorKind::Fwknop(fwknop_door(config, door, f)?),
            Some(ConfigKind::Spa(spa)) => {
                let mut verifier = Verifier::new(spa.window.as_secs(), server.clone());
                verifier.accept_v1_public(spa.accept_v1);
                for user in &spa.users {
                    let load = |source: &CredentialSource| -> Result<Credential, AuthError> {
                        let key_err = |source| AuthError::Key {
                            door: door.name.clone(),
                            user: user.name.clone(),
                            source,
                        };
                        Ok(match source {
                            CredentialSource::SymmetricKeyFile(path) => {
                                Credential::Symmetric(keys::load_spa_key(path).map_err(key_err)?)
                            }
                            CredentialSource::Identity(text) => {
                                if server.is_none() {
                                    return Err(AuthError::NoServerKey {
                                        door: door.name.clone(),
                                        user: user.name.clone(),
                                    });
                                }
                                Credential::Public(keys::identity_public(text).map_err(key_err)?)
                            }
                        })
                    };
                    let policy = UserPolicy {
                        services: user.services.clone(),
                        max_duration: u32::try_from(door.open_for.as_secs())
                            .unwrap_or(u32::MAX)
                            .max(1),
                        allow_address: user.allow_address,
                        retired_after: None,
                    };
                    // A key rotation adds the old credential under the same
                    // name, refused once its grace period is over.
                    let previous = match &user.previous {
                        Some((source, until)) => Some((
                            load(source)?,
                            UserPolicy {
                                retired_after: Some(*until),
                                ..policy.clone()
                            },
                        )),
                        None => None,
                    };
                    for (credential, policy) in
                        std::iter::once((load(&user.credential)?, policy)).chain(previous)
                    {
                        verifier
                            .add_user(&user.name, credential, policy)
                            .map_err(|source| AuthError::Policy {
                                door: door.name.clone(),
                                source,
                            })?;
                    }
                }
                DoorKind::Spa(SpaDoor {
                    port: spa.port,
                    verifier,
                    roaming: spa.roaming,
                })
            }
            Some(ConfigKind::Totp(t)) => {
                let mut users = Vec::new();
                for (name, path) in &t.users {
                    let secret = keys::load_totp_secret(path).map_err(|source| AuthError::Key {
                        door: door.name.clone(),
                        user: name.clone(),
                        source,
                    })?;
                    users.push((name.clone(), secret));
                }
                DoorKind::Totp(TotpDoor {
                    spec: TotpSpec {
                        len: t.length,
                        ports: t.ports.clone(),
                        proto: t.proto,
                        period: t.period.as_secs(),
                    },
                    users,
                })
            }
        };
        out.push(EngineDoor {
            door: door.clone(),
            kind,
            fleet: config.fleet_doors.get(&door.name).cloned(),
        });
    }
    Ok(out)
}

/// An fwknop door's stanzas with their keys and command identities.
fn fwknop_door(
    config: &Config,
    door: &Door,
    f: &sesame_core::fwknop::stanza::FwknopDoor,
) -> Result<FwknopDoor, AuthError> {
    let mut stanzas = Vec::new();
    for stanza in &f.stanzas {
        let bad = |what: String| AuthError::Fwknop {
            door: door.name.clone(),
            line: stanza.line,
            what,
        };
        let hmac = stanza
            .hmac_key
            .as_ref()
            .map(|key| (key.0.as_slice(), stanza.hmac_digest));
        let keys = FwknopKeys::new(&stanza.key.0, stanza.encryption_mode, hmac)
            .map_err(|e| bad(e.to_string()))?;
        let run_as = command_identity(config, stanza).map_err(bad)?;
        stanzas.push(LoadedStanza {
            stanza: stanza.clone(),
            keys,
            run_as,
        });
    }
    Ok(FwknopDoor {
        port: f.port,
        max_age: f.max_age.as_secs(),
        stanzas,
        nat: f.nat.clone(),
    })
}

/// The engine for `config`: doors with their keys, settings, fresh seeds.
pub fn engine(config: &Config) -> Result<Engine, DaemonError> {
    let settings = Settings {
        nflog_group: config.daemon.nflog_group,
        interfaces: config.daemon.interfaces.clone(),
        max_tracked: config.daemon.max_tracked,
        max_grants: config.daemon.max_grants,
        ban: config.daemon.ban,
        spa_pk_rate: config.daemon.spa_pk_rate,
        fleet: fleet_policy(config),
    };
    let seeds = Seeds {
        tracker: random_seed()?,
        grants: random_seed()?,
        budget: random_seed()?,
    };
    Engine::new(doors(config)?, settings, seeds).map_err(|e| DaemonError::Config(e.to_string()))
}

/// Opens the replay store when the engine's doors need one; a warning
/// (lost or unusable state) is logged.
pub fn replay_store(
    config: &Config,
    engine: &Engine,
    now_unix: u64,
) -> Result<Option<PersistentReplay>, DaemonError> {
    if !engine.needs_replay_store() {
        return Ok(None);
    }
    let (mut replay, warning) = PersistentReplay::open(
        &config.daemon.state_dir,
        ReplayCache::DEFAULT_CAPACITY,
        engine.widest_window(),
        now_unix,
    )?;
    if let Some(w) = warning {
        tracing::warn!(event = "replay_state", "{w}");
    }
    replay.cache.set_owners(engine.credential_owners());
    Ok(Some(replay))
}

/// Opens the file of every one-time door, by door name.
pub fn one_time_files(config: &Config) -> Result<HashMap<String, OneTimeFile>, DaemonError> {
    let mut files = HashMap::new();
    for (name, path) in &config.one_time {
        let file = OneTimeFile::open(path).map_err(|e| DaemonError::OneTime {
            door: name.clone(),
            source: e,
        })?;
        files.insert(name.clone(), file);
    }
    Ok(files)
}

/// 128 bits from the OS, as two hash-seed halves.
pub fn random_seed() -> Result<[u64; 2], DaemonError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| DaemonError::Os {
        what: "random seed",
        source: std::io::Error::other(e.to_string()),
    })?;
    let (a, b) = bytes.split_at(8);
    let half = |x: &[u8]| {
        let mut h = [0u8; 8];
        h.copy_from_slice(x);
        u64::from_ne_bytes(h)
    };
    Ok([half(a), half(b)])
}

/// The engine's view of `[fleet]`.
pub fn fleet_policy(config: &Config) -> Option<FleetPolicy> {
    config.fleet.as_ref().map(|f| FleetPolicy {
        name: f.name.clone(),
        group: f.group.clone(),
        on_store_down: f.on_store_down,
        timeout: f.timeout,
    })
}

/// How far back a starting gateway reads grants: `catch_up`, or the
/// longest `open_for` of the fleet doors (no grant lasts longer).
fn catch_up(config: &Config, f: &FleetSettings) -> Duration {
    f.catch_up.unwrap_or_else(|| {
        config
            .doors
            .iter()
            .filter(|d| config.fleet_doors.contains_key(&d.name))
            .map(|d| d.open_for)
            .max()
            .unwrap_or(Duration::from_secs(60))
    })
}

/// Loads the keys and the password of `[fleet]`, and prepares the adapter
/// (its threads start with the control and metrics threads, once
/// privileges are dropped); `None` without `[fleet]`. Nothing waits for
/// the store: it may be down.
pub fn fleet_store(config: &Config) -> Result<Option<RedisFleet>, DaemonError> {
    let Some(f) = &config.fleet else {
        return Ok(None);
    };
    let fail = |what: String| DaemonError::Fleet(what);
    let key = keys::load_identity(&f.key).map_err(|e| fail(format!("key: {e}")))?;
    let mut members = Vec::new();
    for (name, public) in &f.members {
        let public =
            keys::identity_public(public).map_err(|e| fail(format!("members.{name}: {e}")))?;
        members.push((name.clone(), public));
    }
    let own = members.iter().find(|(n, _)| n == &f.name).map(|(_, p)| *p);
    if own != Some(key.public()) {
        return Err(fail(format!(
            "key {} is not the key [fleet.members] lists for this gateway ({:?}): its entries would be rejected by the others",
            f.key.display(),
            f.name
        )));
    }
    let password = f
        .password_file
        .as_ref()
        .map(|p| keys::read_private_text(p).map_err(|e| fail(format!("password_file: {e}"))))
        .transpose()?;
    let adapter = RedisFleet::new(FleetConfig {
        url: f.redis.clone(),
        user: f.user.clone(),
        password,
        name: f.name.clone(),
        group: f.group.clone(),
        key,
        signers: Signers::new(members),
        timeout: f.timeout,
        heartbeat: f.heartbeat,
        catch_up: catch_up(config, f),
    })
    .map_err(|e| fail(e.to_string()))?;
    tracing::info!(event = "fleet", gateway = %f.name, group = %f.group, "fleet mode: gateway {} of group {} on {}", f.name, f.group, f.redis);
    Ok(Some(adapter))
}
