//! Fleet mode in the daemon: moves the Redis adapter's events (spend
//! answers, other gateways' entries, the store's health) into the engine.
//! The adapter is built from `[fleet]` by [`super::build::fleet_store`].

use std::time::Duration;

use sesame_core::fleet::SpendAnswer;
use sesame_fleet::FleetEvent;
use tracing::{error, info, warn};

use super::driver::Daemon;

/// Rejected fleet entries logged per minute; more are only counted.
const MAX_REJECTIONS_LOGGED: u32 = 20;
/// Fleet events taken per turn of the loop: a flood of entries (about
/// 85 µs each) costs the packets at most a few milliseconds per turn.
const EVENTS_PER_TURN: usize = 64;

impl Daemon {
    /// Moves the adapter's events into the engine, [`EVENTS_PER_TURN`] at a
    /// time: spend answers, verified entries of other gateways, and what
    /// the store's health became.
    pub(super) fn fleet_events(&mut self) {
        let Some(fleet) = self.world.fleet.as_mut() else {
            return;
        };
        let events = fleet.drain(EVENTS_PER_TURN);
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
