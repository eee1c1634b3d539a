//! Where the engine's notes become log lines, counters and metrics: one
//! event, three sinks, written once. In flood mode, first knocks and
//! evictions are counted instead of logged one by one (a summary line
//! follows every few seconds).

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use sesame_core::engine::{Level, Note};
use sesame_core::tracker::Event;
use sesame_core::BanPolicy;
use tracing::{debug, error, info, warn};

use super::metrics::Metrics;

/// Per-run counters (shown by `sesame status`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// Grants revoked (control socket, or their door removed by a reload).
    pub revoked: u64,
    /// Manual grants (`sesame open`).
    pub manual_opens: u64,
    /// Successful reloads.
    pub reloads: u64,
    /// Packets delivered by NFLOG.
    pub packets: u64,
    /// Packets the parser refused.
    pub malformed: u64,
    /// Times the kernel reported lost log messages (ENOBUFS).
    pub overruns: u64,
    /// Doors opened (new grants).
    pub opened: u64,
    /// Grants refreshed by a repeated knock.
    pub refreshed: u64,
    /// Knocks ignored from banned prefixes, as last exported.
    pub banned_knocks: u64,
    /// Control connections refused, as last exported.
    pub control_refused: u64,
    /// Log lines dropped, as last exported.
    pub log_dropped: u64,
    /// Times the table was restored.
    pub table_restores: u64,
}

/// First knocks and evictions counted instead of logged during a flood.
#[derive(Debug, Default)]
pub struct FloodQuiet {
    /// First knocks not logged.
    pub first_knocks: u64,
    /// Evictions not logged.
    pub evictions: u64,
    /// When the last summary was written.
    pub summarized: Option<std::time::Instant>,
}

/// The sinks.
pub struct Observer {
    /// Metrics shared with the endpoint's thread.
    pub metrics: Arc<Metrics>,
    /// Counters for `status`.
    pub counters: Counters,
    /// Flood-mode tallies.
    pub flood: FloodQuiet,
    /// The ban policy (for the ban line).
    pub ban: BanPolicy,
    /// When the packets being handled were read, for the `open_us` figure
    /// (knock packet read → grant committed in the kernel).
    pub received_at: std::time::Instant,
    /// The engine clock of the notes being handled.
    pub now: sesame_core::Instant,
    /// Per-door knock counters, cached by tracker door id (cleared on
    /// reload, when ids change).
    knock_counters: Vec<Option<[Counter; 6]>>,
}

impl Observer {
    /// Sinks for a new daemon.
    pub fn new(metrics: Arc<Metrics>, ban: BanPolicy) -> Self {
        Observer {
            metrics,
            counters: Counters::default(),
            flood: FloodQuiet::default(),
            ban,
            received_at: std::time::Instant::now(),
            now: sesame_core::Instant::ZERO,
            knock_counters: Vec::new(),
        }
    }

    /// Door ids changed (a reload).
    pub fn doors_changed(&mut self, ban: BanPolicy) {
        self.knock_counters.clear();
        self.ban = ban;
    }

    fn knock_counter(&mut self, door: usize, name: &str, index: usize) -> &Counter {
        if self.knock_counters.len() <= door {
            self.knock_counters.resize_with(door + 1, || None);
        }
        let metrics = &self.metrics;
        &self.knock_counters[door].get_or_insert_with(|| metrics.knock_counters(name))[index]
    }

    /// Logs, counts and exports one note. `batched`: flood mode is on.
    pub fn note(&mut self, note: Note, batched: bool) {
        match note {
            Note::Knock { event, door } => self.knock(event, &door, batched),
            Note::FirstKnocks {
                door,
                door_id,
                stages,
                evictions,
            } => {
                // Indexes into metrics::KNOCK_RESULTS: stage 0, evicted 4.
                self.knock_counter(door_id, &door, 0).inc_by(stages);
                self.knock_counter(door_id, &door, 4).inc_by(evictions);
                self.metrics.tracker_evictions.inc_by(evictions);
                self.flood.first_knocks += stages;
                self.flood.evictions += evictions;
            }
            Note::BanEnded { prefix } => {
                info!(event = "ban_ended", prefix = %prefix, "ban of {prefix} ended: its knocks count again")
            }
            Note::Accepted {
                event,
                src,
                door,
                user,
                message,
            } => info!(event, source = %src, door = %door, user = %user, "{message}"),
            Note::Refused {
                via,
                level,
                src,
                door,
                user,
                reason,
                message,
            } => {
                self.metrics.reject(&door, via, reason);
                let event = match via {
                    "spa" => "spa_refused",
                    "totp" => "totp_refused",
                    "one_time" => "one_time_refused",
                    _ => "fwknop_refused",
                };
                let user = user.unwrap_or_default();
                match level {
                    Level::Debug => {
                        debug!(event, source = %src, door = %door, user, reason, "{message}")
                    }
                    Level::Info => {
                        info!(event, source = %src, door = %door, user, reason, "{message}")
                    }
                    Level::Error => {
                        error!(event, source = %src, door = %door, user, reason, "{message}")
                    }
                }
            }
            Note::Opened {
                src,
                door,
                services,
                forwards,
                open_for,
            } => {
                self.counters.opened += 1;
                self.metrics.grant(&door, "open");
                let took = self.received_at.elapsed();
                self.metrics.open_latency(&door, took);
                let open_us = took.as_micros() as u64;
                let list: Vec<String> = services
                    .iter()
                    .map(|s| s.to_string())
                    .chain(forwards.iter().map(|f| format!("forward {f}")))
                    .collect();
                if list.is_empty() {
                    info!(event = "open", source = %src, door = %door, open_us, "door opened (commands only; closes in {open_for:?})");
                } else {
                    let list = list.join(",");
                    info!(event = "open", source = %src, door = %door, open_us, "door opened: {list} for {open_for:?}");
                }
            }
            Note::Refreshed {
                src,
                door,
                open_for,
            } => {
                self.counters.refreshed += 1;
                self.metrics.grant(&door, "refresh");
                info!(event = "refresh", source = %src, door = %door, "door already open: grant extended to {open_for:?}");
            }
            Note::OpenFailed { src, door, error } => {
                error!(event = "open_failed", source = %src, door = %door, "could not add the grant: {error}")
            }
            Note::GrantEvicted {
                src,
                door,
                capacity,
            } => {
                warn!(event = "grant_evicted", source = %src, door = %door, "max_grants ({capacity}) reached: the oldest-closing grant was closed to make room")
            }
            Note::Closed { src, door, why } => {
                self.metrics.grant(&door, "close");
                let why: &dyn std::fmt::Display = &why;
                info!(event = "close", source = %src, door = %door, "door closed ({why})");
            }
            Note::Revoked {
                src,
                door,
                services,
                why,
            } => {
                self.counters.revoked += 1;
                self.metrics.grant(&door, "revoke");
                let list = services
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                info!(event = "revoke", source = %src, door = %door, "grant revoked ({why}): {list}");
            }
            Note::RevokeFailed {
                src,
                door,
                error,
                evicted,
            } => {
                if evicted {
                    error!(event = "revoke_failed", source = %src, door = %door, "could not remove an evicted grant from the kernel (it closes at its timeout): {error}");
                } else {
                    error!(event = "revoke_failed", source = %src, door = %door, "could not remove the grant: {error}");
                }
            }
            Note::OneTimeNext {
                door,
                knocks,
                remaining,
            } => {
                info!(event = "one_time", door = %door, remaining, "one-time sequence used; next sequence has {knocks} knock(s), {remaining} left")
            }
            Note::OneTimeExhausted { door } => {
                warn!(event = "one_time_exhausted", door = %door, "no one-time sequence left: door removed")
            }
            Note::OneTimeFailed { door, error } => {
                error!(event = "one_time_failed", door = %door, "cannot mark the used one-time sequence: {error}; door disabled")
            }
            Note::RulesetFailed { door, error } => {
                error!(event = "ruleset_failed", door = %door, "could not update the knock ports: {error}")
            }
            Note::FleetLocalOnly { src, door, error } => {
                warn!(event = "fleet_local_only", source = %src, door = %door, "the fleet store is unreachable ({error}): on_store_down = \"local\" lets this credential in, single use on this gateway only")
            }
            Note::FleetEntry {
                kind,
                from,
                src,
                door,
                outcome,
            } => {
                let kind = match kind {
                    sesame_core::fleet::EntryKind::Grant => "grant",
                    sesame_core::fleet::EntryKind::Revoke => "revoke",
                };
                if outcome == "applied" {
                    info!(event = "fleet_entry", from = %from, source = %src, door = %door, kind, outcome, "fleet {kind} from gateway {from} for {src} on door {door}: applied");
                } else {
                    debug!(event = "fleet_entry", from = %from, source = %src, door = %door, kind, outcome, "fleet {kind} from gateway {from} for {src} on door {door}: ignored ({outcome})");
                }
            }
        }
    }

    fn knock(&mut self, event: Event, door: &str, batched: bool) {
        // Indexes into metrics::KNOCK_RESULTS.
        let result = match event {
            Event::Banned {
                src, prefix, until, ..
            } => {
                self.metrics.bans.inc();
                let ban_for = until.saturating_since(self.now);
                warn!(event = "banned", source = %src, door = %door, prefix = %prefix, "{prefix} used up its knock failure budget ({} failures within {:?}): its knocks are ignored for {ban_for:?} (lift with `sesame unban {prefix}`)", self.ban.max_failures, self.ban.window);
                return;
            }
            Event::Stage { .. } => 0,
            Event::Duplicate { .. } => 1,
            Event::Reset { .. } => 2,
            Event::Timeout { .. } => 3,
            Event::Evicted { .. } => 4,
            Event::Open { .. } => 5,
        };
        if matches!(event, Event::Evicted { .. }) {
            self.metrics.tracker_evictions.inc();
        }
        self.knock_counter(event.door(), door, result).inc();
        // In flood mode, first knocks and evictions arrive once per flood
        // packet: count them instead of formatting a line each.
        if batched {
            match event {
                Event::Stage { matched: 1, .. } => {
                    self.flood.first_knocks += 1;
                    return;
                }
                Event::Evicted { matched: 1, .. } => {
                    self.flood.evictions += 1;
                    return;
                }
                _ => {}
            }
        }
        match event {
            Event::Stage {
                src, matched, of, ..
            } => info!(event = "stage", source = %src, door = %door, "knock {matched}/{of}"),
            Event::Duplicate { src, matched, .. } => {
                debug!(event = "duplicate", source = %src, door = %door, "repeat of knock {matched} ignored")
            }
            Event::Reset {
                src,
                matched_before,
                got,
                ..
            } => {
                info!(event = "reset", source = %src, door = %door, "wrong knock {got} after {matched_before} correct: sequence reset")
            }
            Event::Timeout { src, matched, .. } => {
                info!(event = "timeout", source = %src, door = %door, "sequence timed out after {matched} knock(s)")
            }
            Event::Evicted { src, matched, .. } => {
                warn!(event = "evicted", source = %src, door = %door, "knock state table full: dropped the oldest attempt ({matched} knock(s))")
            }
            Event::Open { .. } | Event::Banned { .. } => {}
        }
    }
}
