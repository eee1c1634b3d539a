//! Fleet mode in the daemon: starts the Redis adapter from `[fleet]`
//! (keys and password read with the file checks of every secret), and
//! moves its events into the engine.

use std::time::Duration;

use sesame_core::fleet::{FleetPolicy, Signers, SpendAnswer};
use sesame_fleet::{FleetConfig, FleetEvent, RedisFleet};
use tracing::{error, info, warn};

use super::driver::Daemon;
use super::error::DaemonError;
use crate::config::{Config, FleetSettings};
use crate::keys;

/// Rejected fleet entries logged per minute; more are only counted.
const MAX_REJECTIONS_LOGGED: u32 = 20;

/// The engine's view of `[fleet]`.
pub fn policy(config: &Config) -> Option<FleetPolicy> {
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
pub fn start(config: &Config) -> Result<Option<RedisFleet>, DaemonError> {
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
    info!(event = "fleet", gateway = %f.name, group = %f.group, "fleet mode: gateway {} of group {} on {}", f.name, f.group, f.redis);
    Ok(Some(adapter))
}

impl Daemon {
    /// Moves the adapter's events into the engine: spend answers, verified
    /// entries of other gateways, and what the store's health became.
    pub(super) fn fleet_events(&mut self) {
        let Some(fleet) = self.world.fleet.as_mut() else {
            return;
        };
        let events = fleet.drain();
        let metrics = std::sync::Arc::clone(&self.observer.metrics);
        for event in events {
            let now = self.now();
            match event {
                FleetEvent::Answer {
                    ticket,
                    answer,
                    took,
                } => {
                    metrics.fleet_spend(took, spend_result(&answer));
                    self.engine
                        .fleet_answered(now, ticket, answer, &mut self.world);
                }
                FleetEvent::Entry { entry, now_ms } => {
                    self.observer.received_at = std::time::Instant::now();
                    let lag = now_ms.saturating_sub(entry.entry().made_ms);
                    metrics.fleet_lag(Duration::from_millis(lag));
                    self.engine
                        .fleet_entry(now, now_ms, &entry, &mut self.world);
                }
                FleetEvent::Rejected { id, error } => {
                    metrics.fleet_rejected(error.reason());
                    let (since, logged) = &mut self.fleet_rejections_logged;
                    if since.elapsed() >= Duration::from_secs(60) {
                        (*since, *logged) = (std::time::Instant::now(), 0);
                    }
                    *logged += 1;
                    if *logged <= MAX_REJECTIONS_LOGGED {
                        warn!(event = "fleet_entry_rejected", id = %id, reason = error.reason(), "ignored fleet entry {id}: {error}");
                    }
                    if *logged == MAX_REJECTIONS_LOGGED {
                        warn!(event = "fleet_entry_rejected", "{MAX_REJECTIONS_LOGGED} fleet entries rejected this minute: further ones are only counted (sesame_fleet_entries_rejected_total)");
                    }
                }
                FleetEvent::PublishFailed(e) => {
                    metrics.fleet_store_error();
                    error!(
                        event = "fleet_publish_failed",
                        "a grant or revoke could not be sent to the fleet: {e}"
                    );
                }
                FleetEvent::Down(e) => {
                    metrics.fleet_up(false);
                    metrics.fleet_store_error();
                    error!(
                        event = "fleet_store_down",
                        "the fleet store is unreachable: {e}"
                    );
                }
                FleetEvent::Up => {
                    metrics.fleet_up(true);
                    info!(event = "fleet_store_up", "the fleet store is reachable");
                }
            }
        }
        self.apply();
    }
}

fn spend_result(answer: &SpendAnswer) -> &'static str {
    match answer {
        SpendAnswer::Spent => "spent",
        SpendAnswer::SpentElsewhere { .. } => "replay",
        SpendAnswer::Unavailable(_) => "unavailable",
    }
}
